"""Active-learning curves: test accuracy of a probe trained on each strategy's picks.

Usage: python benchmarks/al_curves.py [--datasets fmnist,mnist,cifar10,pneumonia,breast]
       [--strategies random,kcenter,typiclust,...] [--peers] [--embeddings pixels-pca,simclr]
       [--seeds 5] [--budgets 10,20,50,100,200,500] [--pool 10000] [--split test|val]
       [--train-seconds 180] [--out benchmarks/results/al_curves.json]

For each dataset of ``../shared/data`` (``CURATE_SHARED_DATA``): a pool of up to
``--pool`` training images (seeded draw; all of a smaller set), and as test set the
official test split (``--split test``) or, for choosing curate's rules without touching
a test split, held-out training images (``--split val``: 5,000 training images outside
the pool; the official val split for the MedMNIST sets). Embeddings:

- ``pixels-pca``: curate's encoder (32 px RGB, PCA-64 fitted on the pool);
- ``simclr``: a small-cnn trained by curate's SimCLR module (``benchmarks/ssl_quality.py``
  in-memory path, the project's augmentation defaults) on the pool for
  ``--train-seconds`` of this CPU; 28 px grayscale sets only.

The loop is ``curate.select.simulation.simulate_curves`` (the engine of ``curate
simulate``): incremental rounds, logistic probe, 5 seeds with common random numbers.
``--peers`` adds scikit-activeml's TypiClust, ProbCover (one object per pool, so its
dense N x N distances and its delta are computed once, as its ``update=False`` intends),
CoreSet, BADGE and margin sampling (installed for the benchmark only: ``pip install --target .peers
scikit-activeml makefun``; the folder is put on ``sys.path``) as strategies on the same
embeddings, probe and seeds.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import sys
import time
import zipfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
PEERS = ROOT.parent / ".peers"
if PEERS.is_dir():
    sys.path.insert(1, str(PEERS))
DATASETS = ("fmnist", "mnist", "cifar10", "pneumonia", "breast")
STRATEGIES = ("random", "kcenter", "kcenter-typical", "typiclust", "probcover", "margin",
              "entropy", "badge", "auto")
GRAY28 = {"fmnist", "mnist", "pneumonia", "breast"}


def shared() -> Path:
    return Path(os.environ.get("CURATE_SHARED_DATA", ROOT.parent.parent / "shared" / "data"))


def load(name: str, pool: int, split: str, rng) -> tuple:
    """(pool images uint8, pool labels, test images, test labels)."""
    from curate import datasets as D

    if name in ("pneumonia", "breast"):
        z = np.load(shared() / "medmnist" / f"{name}mnist.npz")
        Xtr, ytr = z["train_images"], z["train_labels"].reshape(-1)
        Xte, yte = (z["val_images"], z["val_labels"]) if split == "val" else \
            (z["test_images"], z["test_labels"])
        take = rng.permutation(len(Xtr))[:pool]
        return Xtr[take], ytr[take].astype(np.int64), Xte, yte.reshape(-1).astype(np.int64)
    if name == "cifar10":
        from PIL import Image

        zf = zipfile.ZipFile(shared() / "cifar10" / "cifar10_train_jpg.zip")
        names = sorted(n for n in zf.namelist() if n.endswith(".jpg"))
        classes = sorted({n.split("/")[-2] for n in names})
        order = rng.permutation(len(names))
        take = order[:pool] if split == "test" else order[:pool + 5000]
        imgs = np.stack([np.asarray(Image.open(io.BytesIO(zf.read(names[i]))).convert("RGB"))
                         for i in take])
        labels = np.array([classes.index(names[i].split("/")[-2]) for i in take], np.int64)
        if split == "val":
            return imgs[:pool], labels[:pool], imgs[pool:], labels[pool:]
        Xte, yte = D.load_cifar10_test()
        return imgs, labels, Xte, yte.astype(np.int64)
    loader = D.load_fashion_mnist if name == "fmnist" else D.load_mnist
    Xtr, ytr = loader("train")
    order = rng.permutation(len(Xtr))
    if split == "val":
        te = order[pool:pool + 5000]
        Xte, yte = Xtr[te], ytr[te]
    else:
        Xte, yte = loader("test")
    return Xtr[order[:pool]], ytr[order[:pool]].astype(np.int64), Xte, yte.astype(np.int64)


def pixels_pca(X_pool: np.ndarray, X_test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """curate's pixels-pca encoder (fit on the pool) on uint8 images (N, H, W[, 3])."""
    F = pixels_pca_parts({"pool": X_pool, "test": X_test})
    return F["pool"], F["test"]


def pixels_pca_parts(X: dict, fit_on: str = "pool") -> dict:
    """curate's pixels-pca encoder fitted on ``X[fit_on]``, applied to every part of ``X``."""
    import torch
    from PIL import Image

    from curate.encoders.pixels_pca import PixelsPCA

    enc = PixelsPCA()
    T = {k: torch.stack([enc.transform(Image.fromarray(x).convert("RGB")) for x in v])
         for k, v in X.items()}
    enc.fit([T[fit_on]])
    return {k: enc.encode(v).numpy() for k, v in T.items()}


def simclr(X_pool: np.ndarray, X_test: np.ndarray, seconds: float) -> tuple:
    import ssl_quality as sq

    sq._modules()
    args = argparse.Namespace(backbone="small-cnn", image_size=28, batch_size=256,
                              seconds_per_run=seconds, workers=0)
    module, info = sq.fit("simclr", X_pool, args)
    module.eval()
    return sq.embed(module, X_pool), sq.embed(module, X_test), info


def register_peers() -> list[str]:
    """scikit-activeml strategies as curate strategies (benchmark only)."""
    from sklearn.linear_model import LogisticRegression
    from skactiveml import pool as P
    from skactiveml.classifier import SklearnClassifier

    from curate.select import Picks, SELECTORS, pool_rows, register
    from curate.select.probe import MeanNormScaler
    from sklearn.pipeline import make_pipeline

    cache: dict = {}

    def wrap(make, needs_clf, reuse=False):
        def fn(X, budget, seeds=None, labels=None, *, metric="cosine", random_state=None,
               device="auto", fp16=False):
            pool_rows(len(X), seeds, budget)
            y = np.full(len(X), np.nan)
            if seeds is not None and len(seeds):
                y[seeds] = np.where(labels >= 0, labels, np.nan)
            if reuse:   # one object per pool: its dense distances and delta are computed once
                key = (make, X.shape, X[:4].tobytes())
                qs = cache.setdefault(key, make(0))
            else:
                qs = make(int(random_state) % (2**31))
            Xn = X / np.linalg.norm(X, axis=1, keepdims=True)    # same cosine geometry as ours
            kw = {}
            if needs_clf:
                classes = np.unique(y[~np.isnan(y)])
                if len(classes) < 2:    # same documented fallback as curate's
                    return SELECTORS.get("random")(X, budget, seeds, labels,
                                                   random_state=random_state)
                kw["clf"] = SklearnClassifier(make_pipeline(MeanNormScaler(),
                                                            LogisticRegression(C=10, max_iter=1000)),
                                              classes=classes, random_state=0)
            idx = qs.query(Xn, y, batch_size=budget, **kw)
            return Picks(np.asarray(idx, np.int64), np.full(budget, np.nan, np.float32), {})
        return fn

    peers = {"skal-typiclust": (lambda r: P.TypiClust(random_state=r), False, False),
             "skal-probcover": (lambda r: P.ProbCover(random_state=r), False, True),
             "skal-coreset": (lambda r: P.CoreSet(random_state=r), False, False),
             "skal-badge": (lambda r: P.Badge(random_state=r), True, False),
             "skal-margin": (lambda r: P.UncertaintySampling(method="margin_sampling",
                                                             random_state=r), True, False)}
    for name, (make, clf, reuse) in peers.items():
        if name not in SELECTORS:
            register(name, "none (NaN): scikit-activeml")(wrap(make, clf, reuse))
    return list(peers)


def summarise(df, default: str) -> dict:
    from curate.select.simulation import paired_differences

    pd_ = paired_differences(df, baseline="random")
    mean = df.groupby(["strategy", "budget"])["accuracy"].mean().unstack()
    secs = df.groupby("strategy")["seconds"].sum() / df["seed"].nunique()
    return {"mean_accuracy": {s: {int(b): round(float(v), 4) for b, v in row.items()}
                              for s, row in mean.iterrows()},
            "paired_vs_random": pd_.round(4).to_dict(orient="records"),
            "selection_seconds_per_seed": {s: round(float(v), 2) for s, v in secs.items()}}


def vs_best_peer(df, default: str = "auto", baseline: str = "random",
                 prefix: str = "skal-") -> dict:
    """Per budget: ``default - baseline`` and ``default - best peer`` (the ``prefix``
    strategy with the highest mean accuracy at that budget), both paired over seeds with
    95% t-intervals (``paired_differences``), in accuracy points (x 100). ``summary``
    counts the budgets where the default is >= the best peer by mean (``ge_mean``) and
    where the interval excludes the default being worse (``not_worse``: low >= 0). Picking
    the best peer per budget after the fact favours the peers. Empty without peers."""
    from curate.select.simulation import paired_differences

    peers = sorted(s for s in df["strategy"].unique() if s.startswith(prefix))
    if default not in set(df["strategy"]) or not peers:
        return {}
    vs = paired_differences(df[df["strategy"].isin([default, baseline])], baseline=baseline)
    vs = vs[vs["strategy"] == default].set_index("budget")
    mean = df.groupby(["strategy", "budget"])["accuracy"].mean()
    rows = []
    for b in sorted(df["budget"].unique()):
        best = max(peers, key=lambda s: mean.get((s, b), -1.0))
        g = df[(df["budget"] == b) & df["strategy"].isin([default, best])]
        d = paired_differences(g, baseline=best).set_index("strategy").loc[default]
        rows.append({"budget": int(b),
                     **{f"vs_{baseline}{k}": round(100 * float(vs.loc[b, f"diff{k}"]), 2)
                        for k in ("", "_low", "_high")},
                     "best_peer": best, "best_peer_accuracy": round(float(mean[(best, b)]), 4),
                     **{f"vs_best_peer{k}": round(100 * float(d[f"diff{k}"]), 2)
                        for k in ("", "_low", "_high")}})
    return {"default": default, "baseline": baseline, "units": "accuracy points", "budgets": rows,
            "summary": {"budgets": len(rows),
                        "ge_mean": sum(r["vs_best_peer"] >= 0 for r in rows),
                        "not_worse": sum(r["vs_best_peer_low"] >= 0 for r in rows),
                        "above_baseline_mean": sum(r[f"vs_{baseline}"] >= 0 for r in rows)}}


def print_vs_best_peer(run: dict) -> None:
    v = run.get("vs_best_peer")
    if not v:
        return
    print(f"-- {run['dataset']} / {run['embedding']}: {v['default']} - {v['baseline']} and - best "
          f"peer (points, paired 95% interval)")
    base = f"vs_{v['baseline']}"
    for r in v["budgets"]:
        print(f"{r['budget']:6d}  {base} {r[base]:+6.1f} [{r[base + '_low']:+6.1f}, "
              f"{r[base + '_high']:+6.1f}]   vs {r['best_peer']:15s} {r['vs_best_peer']:+6.1f} "
              f"[{r['vs_best_peer_low']:+6.1f}, {r['vs_best_peer_high']:+6.1f}]")
    s = v["summary"]
    print(f"   >= best peer by mean at {s['ge_mean']}/{s['budgets']} budgets; interval excludes "
          f"worse at {s['not_worse']}/{s['budgets']}", flush=True)


def analyse(path: Path, default: str) -> int:
    """Add ``vs_best_peer`` to every run of an existing results JSON, print, save."""
    import pandas as pd

    doc = json.loads(path.read_text())
    for run in doc["runs"]:
        run["vs_best_peer"] = vs_best_peer(pd.DataFrame(run["results"]), default)
        print_vs_best_peer(run)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=1))
    os.replace(tmp, path)
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", default=",".join(DATASETS))
    ap.add_argument("--strategies", default=",".join(STRATEGIES))
    ap.add_argument("--embeddings", default="pixels-pca,simclr")
    ap.add_argument("--peers", action="store_true")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--budgets", default="10,20,50,100,200,500")
    ap.add_argument("--pool", type=int, default=10_000)
    ap.add_argument("--split", choices=("test", "val"), default="test")
    ap.add_argument("--train-seconds", type=float, default=180)
    ap.add_argument("--probe", default="logistic")
    ap.add_argument("--auto-switch", default="",
                    help="also run auto with these switch points (labelled per class), e.g. 3,5,10,20")
    ap.add_argument("--out", default=str(ROOT / "results" / "al_curves.json"))
    ap.add_argument("--analyse", metavar="JSON", default="",
                    help="only add vs_best_peer to an existing results JSON and print it")
    args = ap.parse_args(argv)
    from curate.select import DEFAULT_STRATEGY
    if args.analyse:
        return analyse(Path(args.analyse), DEFAULT_STRATEGY)
    from curate.plot import plot_curves
    from curate.select.simulation import paired_differences, simulate_curves

    strategies = args.strategies.split(",")
    if args.peers:
        strategies += register_peers()
    for k in filter(None, args.auto_switch.split(",")):
        from curate.select import register
        from curate.select.strategies import auto_rule
        register(f"auto@{k}", "as auto")(auto_rule(int(k)))
        strategies.append(f"auto@{k}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    doc = {"benchmark": "al_curves", "split": args.split, "pool": args.pool, "seeds": args.seeds,
           "probe": args.probe, "rounds": "incremental", "default_strategy": DEFAULT_STRATEGY,
           "machine": f"{platform.machine()}, {os.cpu_count()} cores", "runs": []}
    for name in args.datasets.split(","):
        rng = np.random.default_rng(0)
        Xp, yp, Xt, yt = load(name, args.pool, args.split, rng)
        budgets = [b for b in map(int, args.budgets.split(",")) if b <= len(Xp) // 2]
        for emb in args.embeddings.split(","):
            if emb == "simclr" and name not in GRAY28 - {"pneumonia", "breast"}:
                continue
            t = time.perf_counter()
            info = {}
            if emb == "pixels-pca":
                Fp, Ft = pixels_pca(Xp, Xt)
            else:
                Fp, Ft, info = simclr(Xp, Xt, args.train_seconds)
            embed_s = time.perf_counter() - t
            t = time.perf_counter()
            df = simulate_curves(Fp, yp, Ft, yt, strategies, budgets, args.seeds, probe=args.probe)
            run = {"dataset": name, "embedding": emb, "pool": len(Xp), "test": len(Xt),
                   "dim": int(Fp.shape[1]), "budgets": budgets, "embed_seconds": round(embed_s, 1),
                   "train": info, "simulate_seconds": round(time.perf_counter() - t, 1),
                   **summarise(df, DEFAULT_STRATEGY),
                   "vs_best_peer": vs_best_peer(df, DEFAULT_STRATEGY),
                   "results": df.round(5).to_dict(orient="records")}
            doc["runs"].append(run)
            png = out.with_name(f"{out.stem}_{name}_{emb}_{args.split}.png")
            plot_curves(paired_differences(df), png,
                        f"{name} ({emb}, pool {len(Xp)}, {args.split} split)")
            print(f"\n== {name} / {emb}: pool {len(Xp)}, test {len(Xt)}, "
                  f"simulate {run['simulate_seconds']} s", flush=True)
            acc = run["mean_accuracy"]
            print(f"{'strategy':16s}" + "".join(f"{b:>8d}" for b in budgets))
            for s in strategies:
                print(f"{s:16s}" + "".join(f"{acc[s][b]:8.3f}" for b in budgets))
            print_vs_best_peer(run)
            tmp = out.with_suffix(".json.tmp")
            tmp.write_text(json.dumps(doc, indent=1))
            os.replace(tmp, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
