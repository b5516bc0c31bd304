"""SSL latent-space quality for novelty detection (thesis 003; methods.md 1.1-1.3, 3, 5).

Usage: python benchmarks/ssl_quality.py [--quick] [--methods simclr,moco,dino,dino-neg,autoencoder]
       [--classes 0,1,...,9] [--seconds-per-run 90] [--parts 1,2,3] [--out FILE]

Training bypasses the index: the same LightningModules (``curate.trainers.TRAINERS``) fit
on in-memory uint8 arrays through ``ImageDataModule(ArraySource(...))`` (28 px
grayscale, small-cnn, the per-size augmentation defaults of ``curate.trainers.augment``,
each method's default hyper-parameters, batch 256). Every run gets the same wall-clock
budget: 4 timed steps of a throw-away copy estimate the step time, then the run trains
for ``0.9 * budget / step_time`` steps (the cosine LR schedule completes), capped by
Lightning's ``max_time`` at 1.3x the budget. Features = the scoring backbone
(``module.embed``: teacher for DINO, query encoder for MoCo, encoder for the AE),
L2-normalised by the scorers. Scorers (``curate.novelty``, higher = more novel):
``knn`` = minus the cosine similarity to the 50th nearest training embedding,
``mahalanobis`` = Ledoit-Wolf Mahalanobis distance. AUROC with positive = OOD.

(1) Fashion-MNIST one-class: train on the 6,000 training images of class c, score the
    whole test set (in = c); mean AUROC over ``--classes``.
(2) PneumoniaMNIST: train on the normal training images (1,214), AUROC normal vs
    pneumonia on the test set (234 / 390).
(3) All Fashion-MNIST training images, no labels: OOD AUROC FMNIST test vs MNIST test,
    and 10-NN accuracy (cosine, majority vote) of FMNIST test given the training labels.
(4) dino vs dino-neg (rot, in-distribution negatives, lambda = 1) under the same budget
    on (1) and (2): the difference is printed when both methods run.
Baseline row ``pixels``: L2-normalised raw pixels (knn) / PCA-64 (mahalanobis), no learning.
``--quick``: class 0 only, 6 s per run, 2,000 training images of the class and 2,000
test images in (1), part (3) on 3,000 training / 2,000 test images per set; for checking
that the script runs, not for numbers.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent
SSL_METHODS = ("simclr", "moco", "dino", "dino-neg", "autoencoder")
METHOD_OPTS = {"dino-neg": {"neg_shift": "rot", "neg_source": "in-dist", "neg_weight": 1.0}}


def _modules():
    from curate.trainers.run import load_methods, quiet_lightning

    load_methods()
    quiet_lightning()
    warnings.filterwarnings("ignore")


def make_module(method: str, args, n_images: int):
    from curate.trainers import TRAINERS

    m = TRAINERS.get(method)(backbone=args.backbone, image_size=args.image_size, channels=1,
                             batch_size=args.batch_size, **METHOD_OPTS.get(method, {}))
    m.configure_for_data(n_images, min(args.batch_size, n_images))
    return m


def _trainer(max_steps: int, max_seconds: float | None, callbacks=()):
    import lightning as L

    return L.Trainer(accelerator="auto", devices=1, max_epochs=-1, max_steps=max_steps,
                     max_time={"seconds": max_seconds} if max_seconds else None,
                     logger=False, enable_progress_bar=False, enable_checkpointing=False,
                     enable_model_summary=False, callbacks=list(callbacks))


def fit(method: str, X: np.ndarray, args, seed: int = 0):
    """Train ``method`` on uint8 (N, 28, 28) for ~``args.seconds_per_run``; returns
    (module, info)."""
    import lightning as L

    from curate.trainers.datamodule import ArraySource, ImageDataModule

    L.seed_everything(seed, verbose=False)
    probe = make_module(method, args, len(X))
    dm = ImageDataModule(ArraySource(X), probe.train_views(), batch_size=args.batch_size,
                         num_workers=args.workers)
    t = time.perf_counter()
    _trainer(1, None).fit(probe, dm)  # warm-up (first batch, allocation)
    t1 = time.perf_counter()
    _trainer(5, None).fit(probe, dm)  # the throw-away module trains on; only the time counts
    step = max(1e-3, (time.perf_counter() - t1) / 5)
    steps = max(5, int(0.9 * args.seconds_per_run / step))
    L.seed_everything(seed, verbose=False)
    module = make_module(method, args, len(X))
    dm = ImageDataModule(ArraySource(X), module.train_views(), batch_size=args.batch_size,
                         num_workers=args.workers)
    t2 = time.perf_counter()
    tr = _trainer(steps, 1.3 * args.seconds_per_run)
    tr.fit(module, dm)
    loss = tr.callback_metrics.get("loss_epoch", tr.callback_metrics.get("loss"))
    return module, {"steps": int(tr.global_step), "planned_steps": steps,
                    "step_s": round(step, 4), "train_s": round(time.perf_counter() - t2, 1),
                    "probe_s": round(t2 - t, 1), "final_loss": float(loss) if loss is not None else None}


def embed(module, X: np.ndarray, batch: int = 1024) -> np.ndarray:
    import torch

    from curate.trainers.augment import eval_transform

    h = module.hparams
    tf = eval_transform(h.image_size, h.channels)
    out = []
    for i in range(0, len(X), batch):  # (N, H, W) gray or (N, H, W, 3) RGB uint8
        x = torch.from_numpy(X[i:i + batch])
        x = tf(x.unsqueeze(1) if x.ndim == 3 else x.permute(0, 3, 1, 2)).to(module.device)
        out.append(module.embed(x).float().cpu().numpy())
    return np.concatenate(out)


def pixels(X: np.ndarray) -> np.ndarray:
    return X.reshape(len(X), -1).astype(np.float32) / 255.0


def ood_aurocs(F_ref: np.ndarray, F_in: np.ndarray, F_out: np.ndarray, pca: int | None = None) -> dict:
    """AUROC (positive = out) of the knn and mahalanobis scorers fitted on F_ref."""
    from sklearn.decomposition import PCA
    from sklearn.metrics import roc_auc_score

    from curate.novelty import make_scorer
    from curate.novelty._base import l2_normalize

    y = np.r_[np.zeros(len(F_in)), np.ones(len(F_out))]
    F_test = np.concatenate([F_in, F_out])
    res = {}
    knn = make_scorer("knn", k=min(50, len(F_ref) - 1), device="cpu").fit(F_ref)
    res["knn"] = float(roc_auc_score(y, knn.score_samples(F_test)))
    R, T = F_ref, F_test
    if pca:
        p = PCA(pca, random_state=0).fit(l2_normalize(R))
        R, T = p.transform(l2_normalize(R)), p.transform(l2_normalize(T))
    maha = make_scorer("mahalanobis", normalize=not pca).fit(R)
    res["mahalanobis"] = float(roc_auc_score(y, maha.score_samples(T)))
    return res


def knn_accuracy(F_train, y_train, F_test, y_test, k: int = 10) -> float:
    from sklearn.neighbors import KNeighborsClassifier

    clf = KNeighborsClassifier(k, metric="cosine").fit(F_train, y_train)
    return float((clf.predict(F_test) == y_test).mean())


def _features(name: str, args, X_train, *sets):
    """(features of X_train and of every set, training info) for a method or ``pixels``."""
    if name == "pixels":
        return [pixels(X_train)] + [pixels(s) for s in sets], {}
    module, info = fit(name, X_train, args)
    module.eval()
    return [embed(module, X_train)] + [embed(module, s) for s in sets], info


def part1(args, names, rows):
    from curate.datasets import load_fashion_mnist

    Xtr, ytr = load_fashion_mnist("train")
    Xte, yte = load_fashion_mnist("test")
    if args.max_train:
        keep = np.concatenate([np.flatnonzero(ytr == c)[: args.max_train] for c in range(10)])
        Xtr, ytr = Xtr[keep], ytr[keep]
    if args.max_test:
        idx = np.random.default_rng(0).permutation(len(Xte))[: args.max_test]
        Xte, yte = Xte[idx], yte[idx]
    for name in names:
        per = {}
        for c in args.classes:
            t = time.perf_counter()
            (R, T), info = _features(name, args, Xtr[ytr == c], Xte)
            au = ood_aurocs(R, T[yte == c], T[yte != c], pca=64 if name == "pixels" else None)
            per[int(c)] = {**au, **info, "seconds": round(time.perf_counter() - t, 1)}
            print(f"  (1) {name:12s} class {c}: knn {au['knn']:.3f}  maha {au['mahalanobis']:.3f}"
                  f"  {info.get('steps', '-')} steps", flush=True)
        rows.append({"part": "1 fmnist one-class", "method": name,
                     "knn": float(np.mean([v["knn"] for v in per.values()])),
                     "mahalanobis": float(np.mean([v["mahalanobis"] for v in per.values()])),
                     **({"steps": int(np.mean([v["steps"] for v in per.values()]))}
                        if name != "pixels" else {}),
                     "per_class": per})


def part2(args, names, rows):
    from curate.datasets import load_medmnist

    Xtr, ytr = load_medmnist("pneumoniamnist", "train")
    Xte, yte = load_medmnist("pneumoniamnist", "test")
    for name in names:
        (R, T), info = _features(name, args, Xtr[ytr == 0], Xte)
        au = ood_aurocs(R, T[yte == 0], T[yte == 1], pca=64 if name == "pixels" else None)
        print(f"  (2) {name:12s}: knn {au['knn']:.3f}  maha {au['mahalanobis']:.3f}", flush=True)
        rows.append({"part": "2 pneumonia normal-only", "method": name, **au, **info})


def part3(args, names, rows):
    from curate.datasets import load_fashion_mnist, load_mnist

    Xtr, ytr = load_fashion_mnist("train")
    Xte, yte = load_fashion_mnist("test")
    Xm, _ = load_mnist("test")
    rng = np.random.default_rng(0)
    if args.quick:
        i = rng.permutation(len(Xtr))[:3000]
        Xtr, ytr = Xtr[i], ytr[i]
        j = rng.permutation(len(Xte))[:2000]
        Xte, yte, Xm = Xte[j], yte[j], Xm[rng.permutation(len(Xm))[:2000]]
    for name in names:
        (R, T, M), info = _features(name, args, Xtr, Xte, Xm)
        au = ood_aurocs(R, T, M, pca=64 if name == "pixels" else None)
        acc = knn_accuracy(R, ytr, T, yte)
        print(f"  (3) {name:12s}: knn {au['knn']:.3f}  maha {au['mahalanobis']:.3f}  "
              f"10-NN acc {acc:.3f}", flush=True)
        rows.append({"part": "3 fmnist->mnist", "method": name, **au, "knn10_acc": acc, **info})


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--methods", default=",".join(SSL_METHODS))
    ap.add_argument("--classes", default="0,1,2,3,4,5,6,7,8,9")
    ap.add_argument("--seconds-per-run", type=float, default=90.0)
    ap.add_argument("--parts", default="1,2,3")
    ap.add_argument("--backbone", default="small-cnn")
    ap.add_argument("--image-size", type=int, default=28)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--max-test", type=int, default=0, help="subsample the FMNIST test set (part 1)")
    ap.add_argument("--max-train", type=int, default=0, help="training images per class (part 1)")
    ap.add_argument("--no-pixels", action="store_true", help="skip the raw-pixel baseline")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default=str(ROOT / "results" / "ssl_quality.json"))
    args = ap.parse_args(argv)
    if args.quick:
        args.classes, args.seconds_per_run = "0", min(args.seconds_per_run, 6.0)
        args.max_test, args.max_train = args.max_test or 2000, args.max_train or 2000
    args.classes = [int(c) for c in args.classes.split(",") if c != ""]
    methods = [m for m in args.methods.split(",") if m]
    bad = [m for m in methods if m not in SSL_METHODS]
    if bad:
        ap.error(f"unknown method(s) {bad}; choose from {SSL_METHODS}")
    _modules()
    import torch

    names = ([] if args.no_pixels else ["pixels"]) + methods
    parts = {int(p) for p in args.parts.split(",")}
    rows: list[dict] = []
    t0 = time.perf_counter()
    if 1 in parts:
        part1(args, names, rows)
    if 2 in parts:
        part2(args, names, rows)
    if 3 in parts:
        part3(args, names, rows)
    comparison = {}
    for part in ("1 fmnist one-class", "2 pneumonia normal-only"):
        r = {x["method"]: x for x in rows if x["part"] == part}
        if "dino" in r and "dino-neg" in r:
            comparison[part] = {s: round(r["dino-neg"][s] - r["dino"][s], 4) for s in ("knn", "mahalanobis")}
    print(f"\n{'part':26s} {'method':12s} {'knn AUROC':>9s} {'maha AUROC':>10s} {'10-NN acc':>9s} {'steps':>6s}")
    for r in rows:
        acc = f"{r['knn10_acc']:.3f}" if "knn10_acc" in r else ""
        print(f"{r['part']:26s} {r['method']:12s} {r['knn']:9.3f} {r['mahalanobis']:10.3f} {acc:>9s} "
              f"{str(r.get('steps', '')):>6s}")
    for part, d in comparison.items():
        print(f"(4) dino-neg(rot) - dino, {part}: knn {d['knn']:+.3f}, mahalanobis {d['mahalanobis']:+.3f}")
    result = {
        "benchmark": "ssl_quality", "quick": args.quick, "methods": methods, "classes": args.classes,
        "seconds_per_run": args.seconds_per_run, "backbone": args.backbone,
        "image_size": args.image_size, "batch_size": args.batch_size, "rows": rows,
        "dino_neg_minus_dino": comparison, "total_seconds": round(time.perf_counter() - t0, 1),
        "machine": {"platform": platform.platform(), "python": sys.version.split()[0],
                    "torch_threads": torch.get_num_threads(),
                    "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None},
    }
    from curate.provenance import versions

    result["versions"] = versions()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"saved {out} ({result['total_seconds']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
