"""Does the sensitivity score (thesis 003 §3.4; ``curate tune-scorer``) rank settings the
way the true OOD AUROC does? Spearman correlation over settings (issue 10, part 2).

Usage: python benchmarks/sensitivity.py [--quick] [--minutes 1.5] [--epochs 12]
       [--n-train 2000] [--out FILE]

Everything goes through curate's own paths: images are written as PNGs and ingested
into a fresh workspace (batches ``train``, ``test-in``, ``ood``); encoders are trained
with :func:`curate.trainers.run.train` on batch ``train`` (small-cnn, 28 px, batch 64,
one torch thread, ``--epochs`` capped by ``--minutes``; the run holds out 10% of its
images, never trained on); ``embed --model``; sensitivities come from
:func:`curate.novelty.tuning.tune_scorer` on the run's holdout (all runs of a dataset in
one call, so every setting is scored on the same sens / test images).
True OOD AUROC: the scorer fitted on every image the run trained on, AUROC of batch
``ood`` (positive) vs ``test-in``.

Datasets: Fashion-MNIST (``--n-train`` training images; test-in 1,000 FMNIST test) ->
MNIST (1,000 test); PneumoniaMNIST normal training images (1,214) -> test normal (234)
vs pneumonia (390). Runs: ``simclr``, ``dino`` (lambda = 0) and ``dino-neg`` rot in-dist
lambda = 1, both DINO runs with K = 1024 and 2 local crops (cheaper steps). Settings: cosine-weighted tau in
{0.005, ..., 0.5} (8) and knn k in {1, ..., 200} (8) per run.
Spearman rho is reported per run and family (8 settings), pooled over the runs per
family (24 settings), and across runs at the thesis setting tau = 0.04 (3 settings).
``--quick``: 600 training images, 20 s per run, for checking that the script runs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr
from sklearn.metrics import roc_auc_score

ROOT = Path(__file__).resolve().parent
SMALL = {"out_dim": 1024, "local_crops": 2}  # a cheaper DINO step for a shared CPU
RUNS = (("simclr", {}),
        ("dino", SMALL),
        ("dino-neg", {**SMALL, "neg_shift": "rot", "neg_source": "in-dist", "neg_weight": 1.0}))


def datasets(n_train: int, quick: bool):
    from curate.datasets import load_fashion_mnist, load_medmnist, load_mnist

    rng = np.random.default_rng(0)
    xr, _ = load_fashion_mnist("train")
    xi, _ = load_fashion_mnist("test")
    xo, _ = load_mnist("test")
    n_test = 300 if quick else 1000
    yield "fmnist->mnist", xr[rng.choice(len(xr), n_train, replace=False)], xi[:n_test], xo[:n_test]
    pr, pyr = load_medmnist("pneumoniamnist", "train")
    pt, pyt = load_medmnist("pneumoniamnist", "test")
    yield "pneumonia normal->pneumonia", pr[pyr == 0][: n_train], pt[pyt == 0], pt[pyt == 1]


def setup(root: Path, train_x, in_x, ood_x):
    from curate.datasets import write_pngs
    from curate.ingest import ingest
    from curate.workspace import init_workspace

    ws = init_workspace(root / "ws")
    index = ws.open_index()
    for batch, x in (("train", train_x), ("test-in", in_x), ("ood", ood_x)):
        write_pngs(x, np.zeros(len(x), np.int64), root / batch)
        ingest(index, [str(root / batch)], batch=batch)
    return ws, index


def true_aurocs(index, set_name: str, train_ids, cands) -> dict[str, float]:
    """OOD AUROC per candidate label: scorer fitted on every trained image."""
    from curate.embeddings import load_embeddings
    from curate.novelty import make_scorer
    from curate.novelty.tuning import candidate_label

    _, ref = load_embeddings(index, set_name, image_ids=train_ids)
    _, x_in = load_embeddings(index, set_name, batch="test-in")
    _, x_out = load_embeddings(index, set_name, batch="ood")
    out = {}
    for c in cands:
        sc = make_scorer(c["kind"], **{k: v for k, v in c.items() if k != "kind"}).fit(ref)
        s = np.r_[sc.score_samples(x_in), sc.score_samples(x_out)]
        out[candidate_label(c)] = float(roc_auc_score(np.r_[np.zeros(len(x_in)), np.ones(len(x_out))], s))
    return out


def rho(points) -> dict:
    sens, auc = [p[0] for p in points], [p[1] for p in points]
    r = spearmanr(sens, auc)
    return {"n_settings": len(points), "spearman": float(r.statistic), "p_value": float(r.pvalue)}


def bench_dataset(name, train_x, in_x, ood_x, args) -> dict:
    from curate.embed import embed
    from curate.novelty.tuning import expand_candidates, run_split, tune_scorer
    from curate.trainers.run import train

    with tempfile.TemporaryDirectory() as tmp:
        ws, index = setup(Path(tmp), train_x, in_x, ood_x)
        runs, sets = [], []
        for i, (method, opts) in enumerate(RUNS):
            t0 = time.time()
            run = train(index, ws, method, name=f"r{i}-{method}", batch="train", image_size=28,
                        backbone="small-cnn", batch_size=64, epochs=args.epochs,
                        max_minutes=args.minutes, num_workers=0, accelerator="cpu", devices=1,
                        progress=False, checkpoint_every=0, seed=0, **opts)
            rep = embed(index, ws, model=run.name, batch_size=256, num_workers=0)
            last = (run.metrics or [{}])[-1]
            runs.append({"name": run.name, "method": method, "options": opts,
                         "steps": run.data.get("steps"), "epochs_done": run.data.get("epochs_done"),
                         "stopped_by": run.data.get("stopped_by"), "images": run.data.get("images"),
                         "holdout": run.data["holdout_split"]["n_holdout"],
                         "final_loss": last.get("loss"), "final_teacher_temp": last.get("teacher_temp"),
                         "train_seconds": round(time.time() - t0, 1),
                         "embedding_set": rep.embedding_set})
            sets.append(rep.embedding_set)
            print(f"  trained {run.name}: {runs[-1]['steps']} steps, {runs[-1]['epochs_done']} epochs "
                  f"({runs[-1]['stopped_by']}), {runs[-1]['train_seconds']} s", flush=True)
        res = {"runs": runs, "families": {}}
        for fam in ("cosine-weighted", "knn"):
            rep = tune_scorer(index, sets, [fam], seed=0)
            cands = expand_candidates([fam])
            truth = {s: true_aurocs(index, s, run_split(index, s)[1], cands) for s in sets}
            rows = [{"embedding_set": r["embedding"], "setting": r["label"],
                     "sensitivity": r["sensitivity"], "ci": r["ci"],
                     "ood_auroc": truth[r["embedding"]][r["label"]]} for r in rep.table]
            per_run = {s: rho([(r["sensitivity"], r["ood_auroc"]) for r in rows
                               if r["embedding_set"] == s]) for s in sets}
            res["families"][fam] = {
                "rows": rows, "spearman_per_run": per_run,
                "spearman_pooled": rho([(r["sensitivity"], r["ood_auroc"]) for r in rows]),
                "chosen": rep.chosen, "decision": rep.decision, "notes": rep.notes,
                "n_sens": rep.n_sens, "n_test": rep.n_test, "test_source": rep.test_source,
                "best_true": max(rows, key=lambda r: r["ood_auroc"])}
        cw = res["families"]["cosine-weighted"]["rows"]
        res["spearman_across_runs_tau_0.04"] = rho(
            [(r["sensitivity"], r["ood_auroc"]) for r in cw if r["setting"].endswith("tau=0.04")])
        index.close()
    return res


def print_tables(out: dict) -> None:
    for ds, res in out["results"].items():
        print(f"\n== {ds}")
        for fam, f in res["families"].items():
            print(f"-- {fam}: sens={f['n_sens']} test={f['n_test']} chosen={f['chosen']}")
            print(f"{'embedding set':36s} {'setting':28s} {'sensitivity':>11s} {'OOD AUROC':>9s}")
            for r in f["rows"]:
                print(f"{r['embedding_set']:36s} {r['setting']:28s} {r['sensitivity']:11.4f} "
                      f"{r['ood_auroc']:9.4f}")
            for s, v in f["spearman_per_run"].items():
                print(f"   spearman {s}: {v['spearman']:+.3f} (p={v['p_value']:.3g}, n={v['n_settings']})")
            p = f["spearman_pooled"]
            print(f"   spearman pooled: {p['spearman']:+.3f} (p={p['p_value']:.3g}, n={p['n_settings']})")
            for note in f["notes"]:
                print(f"   note: {note}")
        a = res["spearman_across_runs_tau_0.04"]
        print(f"-- across runs at tau=0.04: spearman {a['spearman']:+.3f} (n={a['n_settings']})")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--minutes", type=float, default=1.5, help="wall-clock cap per training run")
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--n-train", type=int, default=2000)
    ap.add_argument("--out", default=str(ROOT / "results" / "sensitivity.json"))
    args = ap.parse_args(argv)
    if args.quick:
        args.minutes, args.n_train, args.epochs = 20 / 60, 600, 2
    import torch

    from curate.provenance import versions
    from curate.trainers.run import load_methods, quiet_lightning

    load_methods()
    quiet_lightning()
    torch.set_num_threads(1)
    t0 = time.time()
    out = {"benchmark": "sensitivity score vs true OOD AUROC (thesis 003 §3.4)",
           "command": " ".join([Path(sys.argv[0]).name] + (argv if argv is not None else sys.argv[1:])),
           "machine": {"platform": platform.platform(), "python": platform.python_version(),
                       "cpus": os.cpu_count(), "torch_threads": 1, "device": "cpu"},
           "versions": versions(),
           "params": {"minutes_per_run": args.minutes, "epochs": args.epochs,
                      "n_train": args.n_train, "quick": args.quick, "backbone": "small-cnn",
                      "image_size": 28, "batch_size": 64, "holdout_fraction": 0.1,
                      "runs": [{"method": m, **o} for m, o in RUNS], "seed": 0},
           "results": {}}
    for name, tr, xi, xo in datasets(args.n_train, args.quick):
        print(f"{name}: {len(tr)} train, {len(xi)} test-in, {len(xo)} ood", flush=True)
        out["results"][name] = bench_dataset(name, tr, xi, xo, args)
    out["seconds"] = round(time.time() - t0, 1)
    print_tables(out)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1, default=str))
    print(f"\nwritten: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
