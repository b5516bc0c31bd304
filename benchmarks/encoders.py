"""Do trained encoders earn their keep on this CPU? Each method vs pixels-pca, one run.

Usage:
  python benchmarks/encoders.py run [--methods simclr,moco,dino,autoencoder[,dino-neg,classifier]]
         [--cpu-minutes 10] [--pneumonia-minutes 3] [--curve-methods simclr --curve-minutes 0.1,0.2,2.5]
         [--jobs 2] [--work DIR] [--out benchmarks/results/encoders.json]
  python benchmarks/encoders.py sweep [--cpu-minutes 2.5] [--jobs 2]   (evidence for the defaults)
  python benchmarks/encoders.py train --method M --data fmnist|pneumonia|cifar10 ... --dir D  (one job)

**Budget.** Every method trains for the same *CPU time* (``--cpu-minutes`` of process CPU
time, one torch/OpenMP thread, no loader workers: the in-memory batched-cache pipeline of
``curate train``), counted by :class:`curate.trainers.schedule.BudgetSchedule` with
``clock=time.process_time``, which also lays the LR/momentum/temperature schedules over
that budget and stops the run when it is spent. ``--jobs`` runs go side by side (one per
core), so a busy machine slows the wall clock, not the budget. Each method: the project's
per-size defaults (``curate.trainers.augment.preset``, small-cnn, batch 256, its default
hyper-parameters); ``classifier`` (supervised, uses the labels) is a reference, not
label-free.

**run** (test splits; nothing is tuned on them):
  (A) Fashion-MNIST: a seeded draw of 20,000 training images trains every method; features
      of those 20k, the 10k FMNIST test images and the 10k MNIST test images go through
      :func:`curate.comparison.compare_arrays` (the engine of ``curate compare``) with
      ``pixels-pca`` (curate's encoder, PCA fitted on the 20k) as the baseline: 10-NN and
      linear-probe accuracy (train 20k -> test 10k, subsampled to 10k), AL curve (budgets
      20-200, 5 seeds: the default strategy vs random), OOD AUROC MNIST vs FMNIST (knn,
      mahalanobis), each with a paired bootstrap interval against pixels-pca.
  (B) PneumoniaMNIST normal -> pneumonia: every label-free method trains on the 1,214
      normal training images for ``--pneumonia-minutes``; AUROC (knn, mahalanobis) of test
      pneumonia (390) vs test normal (234), fitted on the training normals; paired bootstrap
      vs pixels-pca.
  (C) AUROC vs CPU minutes for ``--curve-methods`` (extra runs at ``--curve-minutes``, plus
      the main run): how the gap to pixels-pca closes with budget; also raw pixels (784-d,
      L2-normalised by the scorers), the baseline of ``benchmarks/ssl_quality.py``.
**sweep** (validation splits: 5,000 held-out training images): SimCLR at 28 px grayscale
  (FMNIST, 20k) with the global crop scale (0.2 / 0.5 / 0.8, 1), batch (128 / 256) and
  backbone width (small-cnn 16-32-64-128 / 32-64-128-256) varied one at a time from the
  defaults, DINO at the defaults, and SimCLR at 32 px RGB (CIFAR-10, 20k) with crop scales
  (0.2 / 0.5, 1): 10-NN accuracy and (FMNIST) kNN/Mahalanobis AUROC vs MNIST;
  the evidence behind the per-size defaults (README).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
LABEL_FREE = ("simclr", "moco", "dino", "dino-neg", "autoencoder")
METHOD_OPTS = {"dino-neg": {"neg_shift": "rot", "neg_source": "in-dist", "neg_weight": 1.0}}
WIDTHS = {"half": (16, 32, 64, 128), "default": (32, 64, 128, 256), "double": (64, 128, 256, 512)}
SEED = 0


# ----------------------------------------------------------------------------- data
def data(name: str, split: str = "test"):
    """``{part: uint8 images}``, ``{part: labels}``, the part to train on."""
    import al_curves

    from curate import datasets as D

    rng = np.random.default_rng(SEED)
    if name == "pneumonia":
        Xtr, ytr = D.load_medmnist("pneumoniamnist", "train")
        Xte, yte = D.load_medmnist("pneumoniamnist", split)
        return {"train": Xtr[ytr == 0], "test": Xte}, {"train": ytr[ytr == 0], "test": yte}
    Xp, yp, Xt, yt = al_curves.load("fmnist" if name == "fmnist" else name, 20000, split, rng)
    X, y = {"train": Xp, "test": Xt}, {"train": yp, "test": yt}
    if name == "fmnist":
        Xm, ym = D.load_mnist("test")
        X["mnist"], y["mnist"] = Xm, ym
    return X, y


# ----------------------------------------------------------------------------- one job
def train_job(a) -> dict:
    """Train ``a.method`` on ``a.data``'s training part for ``a.cpu_minutes`` CPU minutes;
    save the features of every part (``features.npz``) and ``info.json`` in ``a.dir``."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import lightning as L
    import torch

    torch.set_num_threads(1)
    import ssl_quality as sq

    from curate.trainers import TRAINERS, augment, backbones
    from curate.trainers.datamodule import ArraySource, ImageDataModule
    from curate.trainers.schedule import BudgetSchedule

    sq._modules()
    if a.crop_min is not None:  # sweep: the global crop scale of the presets
        base = augment.preset

        def preset(size, channels=3):
            p = base(size, channels)
            return augment.Preset(**{**p.__dict__, "crop_scale": (a.crop_min, 1.0),
                                     "dino_crop_scale": (a.crop_min, 1.0)})

        augment.preset = preset
    backbone = "small-cnn"
    if a.width != "default":
        backbone = f"small-cnn-{a.width}"
        widths = WIDTHS[a.width]
        backbones._register(backbone, 8)(lambda c, s: (backbones.SmallCNN(c, widths), widths[-1]))
    X, y = data(a.data, a.split)
    Xtr = X["train"]
    size, channels = Xtr.shape[1], (3 if Xtr.ndim == 4 else 1)
    L.seed_everything(SEED, verbose=False)
    module = TRAINERS.get(a.method)(backbone=backbone, image_size=size, channels=channels,
                                    batch_size=a.batch_size, **METHOD_OPTS.get(a.method, {}))
    module.configure_for_data(len(Xtr), a.batch_size)
    labels = y["train"] if a.method == "classifier" else None
    dm = ImageDataModule(ArraySource(Xtr), module.train_views(), labels=labels,
                         batch_size=a.batch_size, num_workers=0,
                         classes=[str(c) for c in range(int(y["train"].max()) + 1)]
                         if labels is not None else None)
    budget = BudgetSchedule(a.cpu_minutes, clock=time.process_time)
    trainer = L.Trainer(accelerator="cpu", devices=1, max_epochs=-1, logger=False,
                        enable_progress_bar=False, enable_checkpointing=False,
                        enable_model_summary=False, callbacks=[budget])
    c0, w0 = time.process_time(), time.perf_counter()
    trainer.fit(module, dm)
    cpu, wall = time.process_time() - c0, time.perf_counter() - w0
    module.eval()
    feats = {k: sq.embed(module, v) for k, v in X.items()}
    out = Path(a.dir)
    out.mkdir(parents=True, exist_ok=True)
    np.savez(out / "features.npz", **feats)
    loss = trainer.callback_metrics.get("loss_epoch", trainer.callback_metrics.get("loss"))
    info = {"method": a.method, "data": a.data, "split": a.split, "cpu_minutes": a.cpu_minutes,
            "crop_min": a.crop_min, "batch_size": a.batch_size, "width": a.width,
            "steps": int(trainer.global_step), "planned_steps": budget.planned,
            "images_seen": int(trainer.global_step) * a.batch_size, "train_images": len(Xtr),
            "train_cpu_s": round(cpu, 1), "train_wall_s": round(wall, 1),
            "final_loss": float(loss) if loss is not None else None}
    (out / "info.json").write_text(json.dumps(info, indent=2))
    print(json.dumps(info), flush=True)
    return info


# ----------------------------------------------------------------------------- jobs
def run_jobs(jobs: list[list[str]], parallel: int, log: Path) -> None:
    """Run ``train`` jobs (argument lists) ``parallel`` at a time; skip finished ones."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "OMP_WAIT_POLICY": "PASSIVE"}
    todo = [j for j in jobs if not (Path(j[j.index("--dir") + 1]) / "info.json").exists()
            and not running_elsewhere(j[j.index("--dir") + 1])]
    running: list[subprocess.Popen] = []
    with open(log, "a") as fh:
        while todo or running:
            while todo and len(running) < parallel:
                cmd = [sys.executable, str(Path(__file__)), "train", *todo.pop(0)]
                fh.write(" ".join(cmd) + "\n")
                fh.flush()
                running.append(subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env))
            time.sleep(2)
            for p in [p for p in running if p.poll() is not None]:
                running.remove(p)
                if p.returncode:
                    print(f"job failed ({p.returncode}): {' '.join(p.args)}", flush=True)


def running_elsewhere(d: str) -> bool:
    """A ``train`` job for folder ``d`` is already running (an earlier invocation's)."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"train" in args and d.encode() in args:
            return True
    return False


def job(method, data_name, minutes, d: Path, split="test", crop_min=None, batch=256,
        width="default") -> list[str]:
    args = ["--method", method, "--data", data_name, "--cpu-minutes", str(minutes),
            "--split", split, "--batch-size", str(batch), "--width", width, "--dir", str(d)]
    return args + (["--crop-min", str(crop_min)] if crop_min is not None else [])


def load_feats(d: Path) -> tuple[dict, dict]:
    with np.load(d / "features.npz") as z:
        return {k: z[k] for k in z.files}, json.loads((d / "info.json").read_text())


def pixels_pca(X: dict) -> dict:
    """curate's pixels-pca encoder, fitted on the training part, on every part."""
    import al_curves

    return al_curves.pixels_pca_parts(X, fit_on="train")


def table_records(table) -> list[dict]:
    return json.loads(table.to_json(orient="records"))


# ----------------------------------------------------------------------------- run
def evaluate_fmnist(sets: dict, X: dict, y: dict) -> tuple[list[dict], dict]:
    from curate.comparison import compare_arrays
    from curate.verdict import verdict_line, verdicts

    parts = ("train", "test", "mnist")
    F = {name: np.concatenate([f[p] for p in parts]) for name, f in sets.items()}
    n = [len(X[p]) for p in parts]
    yy = np.concatenate([y["train"], y["test"], np.full(n[2], -1)])
    test = np.r_[np.zeros(n[0], bool), np.ones(n[1], bool), np.zeros(n[2], bool)]
    ood = np.r_[np.zeros(n[0] + n[1], bool), np.ones(n[2], bool)]
    table, info = compare_arrays(F, "pixels-pca", y=yy, test=test, ood={"mnist": ood},
                                 al_budgets=(20, 50, 100, 200), al_seeds=5, max_eval=10000,
                                 progress=lambda m: print("  ", m, flush=True))
    v = verdicts(table, "pixels-pca")
    info["verdicts"] = {s: verdict_line(s, v[s], "pixels-pca") for s in v}
    return table_records(table), info


def evaluate_pneumonia(sets: dict, y: dict) -> list[dict]:
    from curate.comparison import auroc_rows, ood_scores

    pos = y["test"] == 1
    rows = []
    for scorer, params in (("knn", {"k": 50}), ("mahalanobis", {})):
        sc = ood_scores({s: f["train"] for s, f in sets.items()},
                        {s: f["test"][~pos] for s, f in sets.items()},
                        {s: f["test"][pos] for s, f in sets.items()}, scorer, **params)
        rows += auroc_rows(f"AUROC pneumonia vs normal ({scorer})", sc, "pixels-pca")
    from curate.verdict import finish_table

    return table_records(finish_table(rows))


def cmd_run(a) -> int:
    work = Path(a.work)
    methods = [m for m in a.methods.split(",") if m]
    curve = [m for m in a.curve_methods.split(",") if m]
    curve_min = [float(x) for x in a.curve_minutes.split(",") if x]
    jobs = [job(m, "fmnist", a.cpu_minutes, work / f"fmnist-{m}-{a.cpu_minutes:g}") for m in methods]
    jobs += [job(m, "pneumonia", a.pneumonia_minutes, work / f"pneumonia-{m}-{a.pneumonia_minutes:g}")
             for m in methods if m in LABEL_FREE and a.pneumonia_minutes > 0]
    jobs += [job(m, "fmnist", t, work / f"fmnist-{m}-{t:g}") for m in curve for t in curve_min]
    t0 = time.perf_counter()
    run_jobs(jobs, a.jobs, work / "jobs.log")
    result: dict = {"benchmark": "encoders", "cpu_minutes": a.cpu_minutes,
                    "pneumonia_minutes": a.pneumonia_minutes, "threads_per_job": 1,
                    "jobs_in_parallel": a.jobs, "backbone": "small-cnn", "batch_size": 256,
                    "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
                    "load_avg_at_end": os.getloadavg()}
    # (A) Fashion-MNIST -> compare_arrays
    X, y = data("fmnist")
    px = pixels_pca(X)
    sets, runs = trained_sets(work, "fmnist", a.cpu_minutes, methods, px)
    result["fmnist"] = {"runs": runs}
    result["fmnist"]["table"], result["fmnist"]["info"] = evaluate_fmnist(sets, X, y)
    # (B) PneumoniaMNIST
    X, y = data("pneumonia")
    sets, runs = trained_sets(work, "pneumonia", a.pneumonia_minutes, methods, pixels_pca(X))
    result["pneumonia"] = {"runs": runs, "table": evaluate_pneumonia(sets, y)}
    # (C) AUROC vs CPU minutes
    X, y = data("fmnist")
    curve_rows = []
    for m in curve:
        for t in sorted(set(curve_min) | {a.cpu_minutes}):
            d = work / f"fmnist-{m}-{t:g}"
            if not (d / "features.npz").exists():
                continue
            f, info = load_feats(d)
            aur = ood_pair(f)
            curve_rows.append({"method": m, "cpu_minutes": t, "steps": info["steps"], **aur,
                               "knn10_acc": knn10(f, y)})
    raw = {k: v.reshape(len(v), -1).astype(np.float32) / 255.0 for k, v in X.items()}
    result["curve"] = {"pixels-pca": {**ood_pair(px), "knn10_acc": knn10(px, y)},
                       "pixels (raw, 784-d)": {**ood_pair(raw), "knn10_acc": knn10(raw, y)},
                       "rows": curve_rows}
    result["seconds"] = round(time.perf_counter() - t0, 1)
    from curate.provenance import versions

    result["versions"] = versions()
    Path(a.out).write_text(json.dumps(result, indent=2))
    summary(result)
    print(f"saved {a.out}")
    return 0


def trained_sets(work: Path, name: str, minutes: float, methods, baseline: dict):
    """``{"pixels-pca": baseline, method: features}`` and ``{method: run info}`` for the
    finished ``name`` runs of ``minutes``."""
    sets, runs = {"pixels-pca": baseline}, {}
    for m in methods:
        d = work / f"{name}-{m}-{minutes:g}"
        if (d / "features.npz").exists():
            sets[m], runs[m] = load_feats(d)
    print(name, list(sets), flush=True)
    return sets, runs


def ood_pair(f: dict) -> dict:
    """kNN / Mahalanobis AUROC, MNIST test (positive) vs FMNIST test, fitted on train."""
    from sklearn.metrics import roc_auc_score

    from curate.novelty import make_scorer

    t = np.r_[np.zeros(len(f["test"])), np.ones(len(f["mnist"]))]
    out = {}
    for name, params in (("knn", {"k": 50}), ("mahalanobis", {})):
        sc = make_scorer(name, **params).fit(f["train"])
        out[f"auroc_{name}"] = round(float(roc_auc_score(
            t, np.r_[sc.score_samples(f["test"]), sc.score_samples(f["mnist"])])), 4)
    return out


def knn10(f: dict, y: dict) -> float:
    from curate.comparison import knn_predict

    return round(float((knn_predict(f["train"], y["train"], f["test"], 10) == y["test"]).mean()), 4)


def summary(result: dict) -> None:
    rows = result["fmnist"]["table"]
    print("\n(A) Fashion-MNIST 20k, test split; value [interval], diff to pixels-pca [interval]")
    for r in rows:
        print(f"  {r['set']:12s} {r['metric']:38s} {r['value']:.4f} [{r['low']:.4f}, {r['high']:.4f}]"
              + (f"  {r['diff']:+.4f} [{r['diff_low']:+.4f}, {r['diff_high']:+.4f}] {r['verdict']}"
                 if r.get("diff") is not None else ""))
    for line in result["fmnist"]["info"].get("verdicts", {}).values():
        print("  ", line)
    print("\n(B) PneumoniaMNIST normal -> pneumonia")
    for r in result["pneumonia"]["table"]:
        print(f"  {r['set']:12s} {r['metric']:42s} {r['value']:.4f} [{r['low']:.4f}, {r['high']:.4f}]")
    print("\n(C) AUROC vs CPU minutes", result["curve"]["pixels-pca"])
    for r in result["curve"]["rows"]:
        print("  ", r)


# ----------------------------------------------------------------------------- sweep
SWEEP = [  # (name, data, method, crop_min, batch, width); None = the preset's crop scale
    ("fmnist-simclr-default", "fmnist", "simclr", None, 256, "default"),
    ("fmnist-dino-default", "fmnist", "dino", None, 256, "default"),
    ("fmnist-simclr-crop0.2", "fmnist", "simclr", 0.2, 256, "default"),
    ("fmnist-simclr-batch128", "fmnist", "simclr", None, 128, "default"),
    ("fmnist-simclr-width-half", "fmnist", "simclr", None, 256, "half"),
    ("cifar10-simclr-default", "cifar10", "simclr", None, 256, "default"),
    ("cifar10-simclr-crop0.2", "cifar10", "simclr", 0.2, 256, "default"),
    ("fmnist-simclr-crop0.8", "fmnist", "simclr", 0.8, 256, "default"),
]


def cmd_sweep(a) -> int:
    work = Path(a.work) / "sweep"
    jobs = [job(m, d, a.cpu_minutes, work / name, split="val", crop_min=c, batch=b, width=w)
            for name, d, m, c, b, w in SWEEP]
    t0 = time.perf_counter()
    run_jobs(jobs, a.jobs, work.parent / "sweep.log")
    rows = []
    cache = {}
    for name, d, m, c, b, w in SWEEP:
        p = work / name
        if not (p / "features.npz").exists():
            continue
        if d not in cache:
            X, y = data(d, "val")
            px = pixels_pca(X)
            cache[d] = (y, {"knn10_acc": knn10(px, y), **(ood_pair(px) if d == "fmnist" else {})})
        y = cache[d][0]
        f, info = load_feats(p)
        rows.append({"name": name, "data": d, "method": m, "crop_min": 0.5 if c is None else c,
                     "batch_size": b, "width": w, "steps": info["steps"],
                     "knn10_acc": knn10(f, y), **(ood_pair(f) if d == "fmnist" else {})})
        print(rows[-1], flush=True)
    out = {"benchmark": "encoders-sweep", "split": "val", "cpu_minutes": a.cpu_minutes,
           "pixels-pca": {d: v[1] for d, v in cache.items()}, "rows": rows,
           "seconds": round(time.perf_counter() - t0, 1), "load_avg_at_end": os.getloadavg()}
    Path(a.out).write_text(json.dumps(out, indent=2))
    print(f"saved {a.out}")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--methods", default="simclr,moco,dino,autoencoder")
    r.add_argument("--cpu-minutes", type=float, default=10.0)
    r.add_argument("--pneumonia-minutes", type=float, default=3.0)
    r.add_argument("--curve-methods", default="simclr")
    r.add_argument("--curve-minutes", default="0.1,0.2,2.5")
    s = sub.add_parser("sweep")
    s.add_argument("--cpu-minutes", type=float, default=2.5)
    for p, out in ((r, "encoders.json"), (s, "encoders_sweep.json")):
        p.add_argument("--jobs", type=int, default=2)
        p.add_argument("--work", default="/tmp/curate-encoders")
        p.add_argument("--out", default=str(ROOT / "results" / out))
    t = sub.add_parser("train")
    t.add_argument("--method", required=True)
    t.add_argument("--data", required=True, choices=("fmnist", "pneumonia", "cifar10"))
    t.add_argument("--split", default="test", choices=("test", "val"))
    t.add_argument("--cpu-minutes", type=float, required=True)
    t.add_argument("--crop-min", type=float, default=None)
    t.add_argument("--batch-size", type=int, default=256)
    t.add_argument("--width", default="default", choices=tuple(WIDTHS))
    t.add_argument("--dir", required=True)
    a = ap.parse_args(argv)
    if a.cmd == "train":
        train_job(a)
        return 0
    return cmd_run(a) if a.cmd == "run" else cmd_sweep(a)


if __name__ == "__main__":
    sys.exit(main())
