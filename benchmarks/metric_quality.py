"""Metric-learning quality: k-NN accuracy and OOD AUROC on Fashion-MNIST; 2-D contrastive
maps of MNIST 4 vs 9 under horizontal shifts (papers 000, 001, 004).

Usage: python benchmarks/metric_quality.py [--quick] [--minutes 8] [--out benchmarks/results/metric_quality.json]

Training bypasses the index: the same LightningModules (``curate.trainers.TRAINERS``)
fit on in-memory uint8 arrays through ``ImageDataModule(ArraySource(...))``; small-cnn
backbone, 28 px grayscale, no augmentation, AdamW lr 1e-3 (classifier: SGD 0.01,
momentum 0.9), each method stopped by ``--epochs`` or ``--minutes`` (wall clock),
whichever comes first. Times are wall-clock seconds on this machine.

(1) Fashion-MNIST (train subset with labels -> test): 10-NN test accuracy (majority
vote; euclidean on the raw contrastive embedding, cosine elsewhere) for contrastive,
triplet (all / hard / semihard mining), ncl, ncl + vMF + CE and the classifier
(penultimate features). OOD: FMNIST test (in) vs MNIST test (out), AUROC with
positive = OOD, for the cosine k-NN score (``curate.novelty`` ``knn``, k = 10, minus
the cosine similarity to the 10th nearest training embedding), the vMF score with the
trained kappas (``VMFScorer.from_params``), the vMF score with kappas re-fitted on the
training embeddings (Banerjee, ``VMFScorer.fit``) and, for the classifier, 1 - max
softmax.

(2) MNIST 4 vs 9: 2-D contrastive embeddings with ``--pairs class``, ``knn`` and
``knn --knn-negatives same-class``. Plots (PNG) of train, test and the test set shifted
horizontally by -6/-3/+3/+6 px (zero fill). "Outside its class cluster": with the
class centroid mu_c and the 95th percentile r_c of the training items' distances to
mu_c, a test item of class c is *misassigned* when its nearest centroid is not mu_c and
*outside* when ``||z - mu_c|| > r_c`` (so ~5% of in-distribution items are outside by
construction); both counted per shift.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent

FMNIST_METHODS = [
    ("contrastive", "contrastive", {"pairs": "class", "embedding_dim": 64}),
    ("triplet-all", "triplet", {"mining": "all", "embedding_dim": 64}),
    ("triplet-hard", "triplet", {"mining": "hard", "embedding_dim": 64}),
    ("triplet-semihard", "triplet", {"mining": "semihard", "embedding_dim": 64}),
    ("ncl", "ncl", {"embedding_dim": 64}),
    ("ncl+vmf+ce", "ncl", {"embedding_dim": 64, "vmf": True, "with_ce": True}),
    ("classifier", "classifier", {"mode": "fine-tune"}),
]
SHIFTS = (-6, -3, 3, 6)


def fit_module(method: str, X: np.ndarray, y: np.ndarray, classes: list[str], epochs: int,
               minutes: float, batch_size: int, seed: int, root: Path, **opts):
    """Train ``method`` on uint8 images X (N, 28, 28) with int labels y; returns (module, info)."""
    import lightning as L

    from curate.trainers import TRAINERS
    from curate.trainers.augment import eval_transform
    from curate.trainers.datamodule import ArraySource, ImageDataModule

    L.seed_everything(seed, workers=True, verbose=False)
    extra = {"optimizer": "sgd", "lr": 0.01} if method == "classifier" else {}
    m = TRAINERS.get(method)(backbone="small-cnn", image_size=28, channels=1,
                             batch_size=batch_size, **extra, **opts)
    dm = ImageDataModule(ArraySource(X), m.train_views(), labels=y, classes=classes,
                         batch_size=batch_size, num_workers=0, eval_fn=eval_transform(28, 1),
                         sampler_fn=getattr(m, "train_sampler", None))
    tr = L.Trainer(max_epochs=epochs, max_time={"minutes": minutes}, accelerator="cpu", devices=1,
                   logger=False, enable_progress_bar=False, enable_model_summary=False,
                   enable_checkpointing=False, default_root_dir=str(root))
    t0 = time.perf_counter()
    tr.fit(m, datamodule=dm)
    info = {"train_seconds": round(time.perf_counter() - t0, 1), "epochs": tr.current_epoch,
            "steps": tr.global_step, "train_images": len(X),
            "final_loss": float(tr.callback_metrics.get("loss", float("nan")))}
    return m, info


def embed(m, X: np.ndarray, batch_size: int = 512) -> np.ndarray:
    from curate.trainers.augment import eval_transform
    from curate.trainers.datamodule import ArraySource

    return m.embed_source(ArraySource(X), eval_transform(28, 1), batch_size=batch_size)


def features(m, X: np.ndarray) -> np.ndarray:
    """Classifier: penultimate (backbone) features."""
    import torch

    from curate.trainers.augment import eval_transform
    from curate.trainers.datamodule import ArraySource

    src, tf = ArraySource(X), eval_transform(28, 1)
    out = []
    m.eval()
    with torch.no_grad():
        for i in range(0, len(X), 512):
            x = torch.stack([tf(src.load(j)) for j in range(i, min(i + 512, len(X)))])
            out.append(m.backbone(x).flatten(1).numpy())
    return np.concatenate(out)


def knn_accuracy(Ztr, ytr, Zte, yte, k=10, metric="cosine") -> float:
    from sklearn.neighbors import KNeighborsClassifier

    clf = KNeighborsClassifier(n_neighbors=k, metric=metric, algorithm="brute").fit(Ztr, ytr)
    return float((clf.predict(Zte) == yte).mean())


def auroc(s_in, s_out) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(np.r_[np.zeros(len(s_in)), np.ones(len(s_out))], np.r_[s_in, s_out]))


def fmnist_part(args, root: Path) -> dict:
    from curate.datasets import load_fashion_mnist, load_mnist
    from curate.novelty import VMFScorer, make_scorer

    Xtr, ytr = load_fashion_mnist("train")
    Xte, yte = load_fashion_mnist("test")
    Xood, _ = load_mnist("test")
    rng = np.random.default_rng(args.seed)
    tr = rng.permutation(len(Xtr))[: args.train_size]
    te = rng.permutation(len(Xte))[: args.test_size]
    od = rng.permutation(len(Xood))[: args.test_size]
    Xtr, ytr, Xte, yte, Xood = Xtr[tr], ytr[tr], Xte[te], yte[te], Xood[od]
    classes = [str(c) for c in range(10)]
    out = {}
    for name, method, opts in FMNIST_METHODS:
        print(f"[fmnist] training {name} ...", flush=True)
        m, info = fit_module(method, Xtr, ytr, classes, args.epochs, args.minutes, args.batch_size,
                             args.seed, root / name, **opts)
        t0 = time.perf_counter()
        if method == "classifier":
            Ztr, Zte, Zood = features(m, Xtr), features(m, Xte), features(m, Xood)
        else:
            Ztr, Zte, Zood = embed(m, Xtr), embed(m, Xte), embed(m, Xood)
        metric = "euclidean" if method == "contrastive" else "cosine"
        res = dict(info, knn10_acc=knn_accuracy(Ztr, ytr, Zte, yte, 10, metric))
        knn = make_scorer("knn", k=10).fit(Ztr)
        res["ood_auroc_knn"] = auroc(knn.score_samples(Zte), knn.score_samples(Zood))
        if method == "ncl":
            fitted = VMFScorer().fit(Ztr, ytr)
            res["ood_auroc_vmf_fitted"] = auroc(fitted.score_samples(Zte), fitted.score_samples(Zood))
            k = m.kappas()
            if k is not None:
                p = m.vmf_params()
                vmf = VMFScorer.from_params(p["means"], p["kappas"], np.arange(10))
                res["ood_auroc_vmf_trained"] = auroc(vmf.score_samples(Zte), vmf.score_samples(Zood))
                res["kappa_trained_median"] = float(np.median(k))
                res["kappa_fitted_median"] = float(np.median(fitted.kappas_))
        if method == "classifier" or (method == "ncl" and m.ce_head is not None):
            import torch

            from curate.trainers.augment import eval_transform
            from curate.trainers.datamodule import ArraySource

            def proba(X):
                src, tf = ArraySource(X), eval_transform(28, 1)
                return np.concatenate([m.predict_proba(torch.stack(
                    [tf(src.load(j)) for j in range(i, min(i + 512, len(X)))])).numpy()
                    for i in range(0, len(X), 512)])

            p_in, p_out = proba(Xte), proba(Xood)
            res["test_acc_softmax"] = float((p_in.argmax(1) == yte).mean())
            res["ood_auroc_softmax"] = auroc(1 - p_in.max(1), 1 - p_out.max(1))
        res["eval_seconds"] = round(time.perf_counter() - t0, 1)
        out[name] = res
        print(f"  {name}: " + ", ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}"
                                        for k, v in res.items()), flush=True)
    return out


def shift(X: np.ndarray, dx: int) -> np.ndarray:
    """Shift images horizontally by dx px (positive = right), zero fill."""
    out = np.zeros_like(X)
    if dx > 0:
        out[:, :, dx:] = X[:, :, :-dx]
    elif dx < 0:
        out[:, :, :dx] = X[:, :, -dx:]
    else:
        out[:] = X
    return out


def cluster_stats(Ztr, ytr, Z, y) -> dict:
    cents = np.stack([Ztr[ytr == c].mean(0) for c in (0, 1)])
    radius = np.array([np.quantile(np.linalg.norm(Ztr[ytr == c] - cents[c], axis=1), 0.95)
                       for c in (0, 1)])
    d = np.linalg.norm(Z[:, None, :] - cents[None], axis=2)
    mis = d.argmin(1) != y
    outside = d[np.arange(len(y)), y] > radius[y]
    return {"n": int(len(y)), "misassigned": int(mis.sum()), "outside_95": int(outside.sum()),
            "misassigned_frac": float(mis.mean()), "outside_95_frac": float(outside.mean())}


def mnist49_part(args, root: Path, res_dir: Path) -> dict:
    from curate.datasets import load_mnist
    from curate.plot import plot_embedding

    Xtr, ytr = load_mnist("train")
    Xte, yte = load_mnist("test")
    rng = np.random.default_rng(args.seed)
    keep_tr = np.flatnonzero(np.isin(ytr, (4, 9)))
    keep_te = np.flatnonzero(np.isin(yte, (4, 9)))
    keep_tr = rng.permutation(keep_tr)[: args.train_size_49]
    keep_te = rng.permutation(keep_te)[: args.test_size_49]
    Xtr, ytr = Xtr[keep_tr], (ytr[keep_tr] == 9).astype(np.int64)
    Xte, yte = Xte[keep_te], (yte[keep_te] == 9).astype(np.int64)
    names = np.array(["4", "9"])
    out = {}
    regimes = [("class", {"pairs": "class"}), ("knn", {"pairs": "knn"}),
               ("knn-same-class-neg", {"pairs": "knn", "knn_negatives": "same-class"})]
    for regime, opts in regimes:
        print(f"[mnist 4v9] training contrastive {regime} ...", flush=True)
        m, info = fit_module("contrastive", Xtr, ytr, ["4", "9"], args.epochs_49, args.minutes,
                             args.batch_size, args.seed, root / f"c49-{regime}", embedding_dim=2,
                             **opts)
        Ztr, Zte = embed(m, Xtr), embed(m, Xte)
        res = dict(info, test=cluster_stats(Ztr, ytr, Zte, yte), shifted={})
        pngs = {"train": plot_embedding(Ztr, res_dir / f"metric_quality_49_{regime}_train.png",
                                        list(names[ytr]), title=f"MNIST 4 vs 9, contrastive {regime}: train"),
                "test": plot_embedding(Zte, res_dir / f"metric_quality_49_{regime}_test.png",
                                       list(names[yte]), title=f"MNIST 4 vs 9, contrastive {regime}: test")}
        Zs, labs = [], []
        for dx in SHIFTS:
            Z = embed(m, shift(Xte, dx))
            res["shifted"][f"{dx:+d}"] = cluster_stats(Ztr, ytr, Z, yte)
            Zs.append(Z)
            labs += [f"{n} shift {dx:+d}" for n in names[yte]]
        Zall = np.concatenate([Zte] + Zs)
        labs = [f"{n} shift 0" for n in names[yte]] + labs
        pngs["shifted"] = plot_embedding(Zall, res_dir / f"metric_quality_49_{regime}_shifted.png",
                                         labs, title=f"MNIST 4 vs 9, contrastive {regime}: test "
                                         "shifted by -6/-3/0/+3/+6 px")
        res["plots"] = {k: str(Path(v).relative_to(ROOT.parent)) if Path(v).is_relative_to(ROOT.parent)
                        else str(v) for k, v in pngs.items()}
        out[regime] = res
        s = res["shifted"]
        print(f"  {regime}: {info['train_seconds']}s, test misassigned {res['test']['misassigned']}"
              f"/{res['test']['n']}, outside95 {res['test']['outside_95']}; shifted misassigned "
              + ", ".join(f"{k}:{v['misassigned']}" for k, v in s.items()), flush=True)
    return out


def print_tables(res: dict) -> None:
    f = res["fmnist"]
    cols = ["train_seconds", "epochs", "knn10_acc", "ood_auroc_knn", "ood_auroc_vmf_trained",
            "ood_auroc_vmf_fitted", "ood_auroc_softmax"]
    print("\nFashion-MNIST (10-NN accuracy; OOD AUROC FMNIST vs MNIST test)")
    print(f"{'method':18s} " + " ".join(f"{c:>21s}" for c in cols))
    for name, r in f.items():
        print(f"{name:18s} " + " ".join(
            f"{r[c]:21.3f}" if isinstance(r.get(c), float) else f"{str(r.get(c, '-')):>21s}" for c in cols))
    best_tl = max(f[k]["knn10_acc"] for k in f if k.startswith("triplet"))
    print(f"\nNCL >= best triplet (10-NN acc)? {f['ncl']['knn10_acc']:.3f} vs {best_tl:.3f}: "
          f"{'yes' if f['ncl']['knn10_acc'] >= best_tl else 'no'}")
    print("\nMNIST 4 vs 9, 2-D contrastive: misassigned (nearest centroid wrong) / outside the "
          "class's 95% training radius")
    print(f"{'regime':20s} {'seconds':>8s} {'test':>12s} " + " ".join(f"{s:+d}".rjust(12) for s in SHIFTS))
    for reg, r in res["mnist49"].items():
        cells = [f"{r['test']['misassigned']}/{r['test']['outside_95']}"] + \
                [f"{r['shifted'][f'{s:+d}']['misassigned']}/{r['shifted'][f'{s:+d}']['outside_95']}"
                 for s in SHIFTS]
        print(f"{reg:20s} {r['train_seconds']:8.1f} " + " ".join(c.rjust(12) for c in cells)
              + f"   (n={r['test']['n']} per column)")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small subsets, few epochs (a smoke run)")
    ap.add_argument("--minutes", type=float, default=8.0, help="wall-clock cap per method")
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(ROOT / "results" / "metric_quality.json"))
    args = ap.parse_args(argv)
    if args.quick:
        args.train_size, args.test_size, args.epochs = 2000, 1000, args.epochs or 2
        args.train_size_49, args.test_size_49, args.epochs_49 = 1500, 400, 3
        args.minutes = min(args.minutes, 1.0)
    else:
        args.train_size, args.test_size, args.epochs = 20000, 10000, args.epochs or 15
        args.train_size_49, args.test_size_49, args.epochs_49 = 100000, 100000, 10
    warnings.filterwarnings("ignore")
    from curate.provenance import versions
    from curate.trainers.run import load_methods, quiet_lightning

    quiet_lightning()
    load_methods()
    res_dir = Path(args.out).parent
    res_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        res = {"fmnist": fmnist_part(args, Path(tmp)), "mnist49": mnist49_part(args, Path(tmp), res_dir)}
    f = res["fmnist"]
    best_tl = max(f[k]["knn10_acc"] for k in f if k.startswith("triplet"))
    res["ncl_ge_triplet"] = bool(f["ncl"]["knn10_acc"] >= best_tl)
    import torch

    res["meta"] = {"quick": args.quick, "args": {k: v for k, v in vars(args).items()},
                   "total_seconds": round(time.perf_counter() - t0, 1), "versions": versions(),
                   "machine": platform.platform(), "cpus": os.cpu_count(),
                   "torch_threads": torch.get_num_threads()}
    print_tables(res)
    Path(args.out).write_text(json.dumps(res, indent=2))
    print(f"\nwritten {args.out} (total {res['meta']['total_seconds']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
