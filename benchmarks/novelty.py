"""Novelty benchmark: every scorer on pixel embeddings, pytorch-ood side by side,
throughput, bounded-memory Mahalanobis fit, MMD timing and batch-check error rates.

Usage: python benchmarks/novelty.py [--quick] [--out benchmarks/results/novelty.json]

Embeddings (no learning): ``pixels`` = raw pixels / 255 (784-d; the scorers
L2-normalise), ``pixels-pca`` = PCA-64 of the pixels fitted on the reference.
Metrics: AUROC and FPR at 95% TPR, positive class = OOD (FPR = fraction of
in-distribution items scored above the threshold that catches 95% of OOD items).
Protocols: (1) Fashion-MNIST train -> FMNIST test (in) vs MNIST test (out);
(2) FMNIST one-class (ref = one class's training images, in = that class in test,
out = the other test classes; mean over classes); (3) PneumoniaMNIST normal training
images -> test normal (in) vs pneumonia (out).
pytorch-ood (benchmark only, not a curate dependency) ``Mahalanobis`` and ``KNN``
detectors run on the same embeddings; speed ratio = their fit+score time / ours.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
from sklearn.decomposition import PCA
from sklearn.metrics import roc_auc_score, roc_curve

from curate.datasets import load_fashion_mnist, load_medmnist, load_mnist
from curate.novelty import SCORERS, make_scorer
from curate.novelty.calibration import ConformalCalibrator
from curate.novelty.shift import benjamini_hochberg, check_batch, mmd_test

ROOT = Path(__file__).resolve().parent
SCORER_PARAMS = {"knn": {"k": 50}}
LABELLED = {"mahalanobis-class", "centroid", "vmf"}


def fpr_at_95_tpr(y_ood, scores) -> float:
    fpr, tpr, _ = roc_curve(y_ood, scores)
    return float(fpr[np.searchsorted(tpr, 0.95, side="left")])


def metrics(s_in, s_out) -> dict:
    y = np.r_[np.zeros(len(s_in)), np.ones(len(s_out))]
    s = np.r_[s_in, s_out]
    return {"auroc": float(roc_auc_score(y, s)), "fpr95": fpr_at_95_tpr(y, s)}


def flat(images) -> np.ndarray:
    return images.reshape(len(images), -1).astype(np.float32) / 255.0


def embed(ref_imgs, *others, pca_dim=64, seed=0):
    """{name: (ref, *others)} for the two pixel embeddings."""
    ref = flat(ref_imgs)
    rest = [flat(o) for o in others]
    fit = ref if len(ref) <= 20000 else ref[np.random.default_rng(seed).choice(len(ref), 20000, replace=False)]
    pca = PCA(pca_dim, svd_solver="randomized", random_state=seed).fit(fit)
    return {"pixels": (ref, *rest),
            "pixels-pca": tuple(pca.transform(a).astype(np.float32) for a in (ref, *rest))}


def run_scorers(ref, y_ref, x_in, x_out, sample_size) -> dict:
    out = {}
    for name in SCORERS.names():
        t = time.perf_counter()
        sc = make_scorer(name, sample_size=sample_size, **SCORER_PARAMS.get(name, {}))
        sc.fit(ref, y_ref if name in LABELLED else None)
        m = metrics(sc.score_samples(x_in), sc.score_samples(x_out))
        m["seconds"] = time.perf_counter() - t
        out[name] = m
    return out


def pytorch_ood_compare(ref, y_ref, x_in, x_out, k=50) -> dict:
    try:
        import torch
        from pytorch_ood.detector import KNN, Mahalanobis
    except ImportError:
        return {"skipped": "pytorch-ood not installed (pip install pytorch-ood)"}
    res = {}
    zr, zi, zo = (torch.from_numpy(np.ascontiguousarray(a)) for a in (ref, x_in, x_out))
    yr = torch.from_numpy(np.asarray(y_ref, np.int64))
    for label, det, ours in [
        ("Mahalanobis (class) vs mahalanobis-class", lambda: Mahalanobis(None), ("mahalanobis-class", {}, True)),
        ("KNN k=50 vs knn", lambda: KNN(None, k=k), ("knn", {"k": k}, False)),
    ]:
        t = time.perf_counter()
        d = det().fit_features(zr, yr)
        theirs = metrics(d.predict_features(zi).double().numpy(), d.predict_features(zo).double().numpy())
        t_theirs = time.perf_counter() - t
        t = time.perf_counter()
        sc = make_scorer(ours[0], **ours[1]).fit(ref, y_ref if ours[2] else None)
        mine = metrics(sc.score_samples(x_in), sc.score_samples(x_out))
        t_ours = time.perf_counter() - t
        res[label] = {"pytorch_ood_auroc": theirs["auroc"], "curate_auroc": mine["auroc"],
                      "pytorch_ood_s": t_theirs, "curate_s": t_ours, "speed_ratio": t_theirs / t_ours}
    return res


def protocol_fmnist_mnist(q, out):
    xr, yr = load_fashion_mnist("train")
    xi, _ = load_fashion_mnist("test")
    xo, _ = load_mnist("test")
    rng = np.random.default_rng(0)
    if q:
        sel = rng.choice(len(xr), 6000, replace=False)
        xr, yr, xi, xo = xr[sel], yr[sel], xi[:1000], xo[:1000]
    res = {}
    for emb, (r, i, o) in embed(xr, xi, xo).items():
        res[emb] = run_scorers(r, yr, i, o, 2000 if q else 10000)
        res[f"pytorch_ood ({emb})"] = pytorch_ood_compare(r, yr, i, o)
    out["fmnist_vs_mnist"] = res


def protocol_one_class(q, out):
    xr, yr = load_fashion_mnist("train")
    xt, yt = load_fashion_mnist("test")
    classes = [0, 1, 7] if q else list(range(10))
    per = {}
    for c in classes:
        ref = xr[yr == c][: 1000 if q else None]
        xi, xo = xt[yt == c], xt[yt != c]
        if q:
            xi, xo = xi[:300], xo[:900]
        for emb, (r, i, o) in embed(ref, xi, xo).items():
            for name, m in run_scorers(r, None, i, o, 1000 if q else 5000).items():
                per.setdefault(emb, {}).setdefault(name, []).append(m["auroc"])
    out["fmnist_one_class"] = {emb: {name: {"mean_auroc": float(np.mean(v)), "per_class": v}
                                     for name, v in d.items()} for emb, d in per.items()}
    out["fmnist_one_class"]["classes"] = classes


def protocol_pneumonia(q, out):
    xr, yr = load_medmnist("pneumoniamnist", "train")
    xt, yt = load_medmnist("pneumoniamnist", "test")
    ref = xr[yr == 0]
    res = {}
    for emb, (r, i, o) in embed(ref, xt[yt == 0], xt[yt == 1]).items():
        res[emb] = run_scorers(r, None, i, o, 1000)
        if emb == "pixels-pca":
            res["pytorch_ood (pixels-pca)"] = pytorch_ood_compare(r, np.zeros(len(r)), i, o)
    out["pneumonia"] = res


def throughput(q, out):
    rng = np.random.default_rng(0)
    n = 10_000 if q else 100_000
    R = rng.standard_normal((n, 128)).astype(np.float32)
    Q = rng.standard_normal((n, 128)).astype(np.float32)
    res = {"n_queries": n, "n_reference": n, "d": 128}
    for name in ("knn", "cosine-weighted", "max-cosine"):
        sc = make_scorer(name, sample_size=1000, **SCORER_PARAMS.get(name, {})).fit(R)
        t = time.perf_counter()
        sc.score_samples(Q)
        dt = time.perf_counter() - t
        res[name] = {"seconds": dt, "queries_per_s": n / dt}
    out["throughput"] = res


def mahalanobis_memory(q, out):
    n, d, chunk = (100_000 if q else 1_000_000), 256, 50_000
    rng = np.random.default_rng(0)
    basis = rng.standard_normal((d, d)).astype(np.float32) / np.sqrt(d)
    sc = make_scorer("mahalanobis")
    tracemalloc.start()
    t = time.perf_counter()
    gen = 0.0
    for s in range(0, n, chunk):
        g = time.perf_counter()
        X = rng.standard_normal((chunk, d)).astype(np.float32) @ basis
        gen += time.perf_counter() - g
        sc.partial_fit(X)
        del X
    sc.score_samples(rng.standard_normal((10, d)))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    out["mahalanobis_partial_fit"] = {
        "n": n, "d": d, "chunk": chunk, "seconds": time.perf_counter() - t - gen,
        "peak_traced_MiB": peak / 2**20, "data_MiB_if_loaded": n * d * 4 / 2**20,
        "chunk_MiB": chunk * d * 4 / 2**20,
        "maxrss_MiB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "shrinkage": sc.shrinkage_}


def mmd_timing(q, out):
    xr, _ = load_fashion_mnist("train")
    xt, _ = load_fashion_mnist("test")
    n_ref, n_b, B = (2000, 500, 200) if q else (10_000, 2000, 1000)
    emb = embed(xr[:20000], xt)["pixels-pca"]
    rng = np.random.default_rng(1)
    res = {}
    for label, ref, batch in [("fmnist pca64", emb[0][:n_ref], emb[1][:n_b]),
                              ("gaussian d=128", rng.standard_normal((n_ref, 128)),
                               rng.standard_normal((n_b, 128)))]:
        t = time.perf_counter()
        r = mmd_test(ref, batch, n_permutations=B)
        res[label] = {"seconds": time.perf_counter() - t, "n_ref": n_ref, "n_batch": n_b,
                      "n_permutations": B, "p_value": r["p_value"]}
    out["mmd_timing"] = res


def batch_checks(q, out):
    """False alarms on in-distribution batches, detection on shifted batches."""
    xr, _ = load_fashion_mnist("train")
    xt, _ = load_fashion_mnist("test")
    xm, _ = load_mnist("test")
    rng = np.random.default_rng(2)
    perm = rng.permutation(len(xr))
    n_cal = 2000 if q else 5000
    ref_imgs, cal_imgs = xr[perm[n_cal:]][: 10000 if q else None], xr[perm[:n_cal]]
    size, n_in, n_shift = 500, (6 if q else 20), (3 if q else 10)
    B, max_ref = (200, 3000) if q else (1000, 10_000)
    flat_all = [flat(a) for a in (ref_imgs, cal_imgs, xt, xm)]
    pca = PCA(64, svd_solver="randomized", random_state=0).fit(flat_all[0][:20000])
    E_ref, E_cal = pca.transform(flat_all[0]), pca.transform(flat_all[1])
    sc = make_scorer("knn", k=50, sample_size=1000).fit(E_ref)
    cal = ConformalCalibrator(0.05).fit(sc.score_samples(E_cal))

    def one(images):
        e = pca.transform(flat(images))
        return check_batch(E_ref, e, cal, sc.score_samples(e), alpha=0.05,
                           n_permutations=B, max_ref=max_ref, random_state=int(rng.integers(1 << 30)))

    def summarise(results):
        return {"n_batches": len(results),
                "shifted": int(sum(r["verdict"] == "shifted" for r in results)),
                "flag_p_median": float(np.median([r["flag_p"] for r in results])),
                "mmd_p_median": float(np.median([r["mmd"]["p_value"] for r in results])),
                "flagged_fraction_mean": float(np.mean([r["flagged_fraction"] for r in results])),
                "mmd_effect_mean": float(np.mean([r["mmd"]["effect_size"] for r in results]))}

    order = rng.permutation(len(xt))
    in_res = [one(xt[order[i * size:(i + 1) * size]]) for i in range(n_in)]
    res = {"in-distribution": summarise(in_res)}
    rej, _ = benjamini_hochberg([r["combined_p"] for r in in_res], q=0.05)
    res["in-distribution"]["bh_rejected"] = int(rej.sum())
    t0 = time.perf_counter()

    def mixed(frac):
        k = int(round(frac * size))
        return np.concatenate([xm[rng.choice(len(xm), k, replace=False)],
                               xt[rng.choice(len(xt), size - k, replace=False)]])

    shifts = {
        "mnist 100%": lambda: mixed(1.0),
        "mnist 20%": lambda: mixed(0.2),
        "mnist 5%": lambda: mixed(0.05),
        "rotated 90": lambda: np.rot90(xt[rng.choice(len(xt), size, replace=False)], 1, axes=(1, 2)),
        "gaussian noise sd=40": lambda: np.clip(
            xt[rng.choice(len(xt), size, replace=False)] + rng.normal(0, 40, (size, 28, 28)), 0, 255
        ).astype(np.uint8),
    }
    for label, make in shifts.items():
        res[label] = summarise([one(make()) for _ in range(n_shift)])
    res["seconds_per_check"] = (time.perf_counter() - t0) / (n_shift * len(shifts))
    out["batch_checks"] = res


def print_tables(out):
    def auroc_table(title, d):
        print(f"\n== {title} (AUROC / FPR@95TPR, positive = OOD) ==")
        embs = [e for e in d if not e.startswith("pytorch_ood")]
        print(f"{'scorer':20s}" + "".join(f"{e:>24s}" for e in embs))
        for name in SCORERS.names():
            print(f"{name:20s}" + "".join(
                f"{d[e][name]['auroc']:>12.3f} / {d[e][name]['fpr95']:.3f}  " for e in embs))
        for e in d:
            if e.startswith("pytorch_ood"):
                for label, r in d[e].items():
                    if isinstance(r, dict):
                        print(f"  {e} {label}: pytorch-ood {r['pytorch_ood_auroc']:.3f} ({r['pytorch_ood_s']:.2f}s)"
                              f" | curate {r['curate_auroc']:.3f} ({r['curate_s']:.2f}s) | speed x{r['speed_ratio']:.1f}")
                    else:
                        print(f"  {e}: {r}")

    if "fmnist_vs_mnist" in out:
        auroc_table("Fashion-MNIST -> MNIST", out["fmnist_vs_mnist"])
    if "fmnist_one_class" in out:
        d = out["fmnist_one_class"]
        print(f"\n== FMNIST one-class, mean AUROC over classes {d['classes']} ==")
        for name in SCORERS.names():
            print(f"{name:20s}" + "".join(f"{e}: {d[e][name]['mean_auroc']:.3f}   "
                                          for e in d if e != "classes"))
    if "pneumonia" in out:
        auroc_table("PneumoniaMNIST normal -> pneumonia", out["pneumonia"])
    for key in ("throughput", "mahalanobis_partial_fit", "mmd_timing"):
        if key in out:
            print(f"\n== {key} ==")
            print(json.dumps(out[key], indent=1))
    if "batch_checks" in out:
        print("\n== batch checks (batches of 500; Bonferroni of beta-binomial flag test + MMD at 0.05) ==")
        for label, r in out["batch_checks"].items():
            if isinstance(r, dict):
                print(f"{label:22s} shifted {r['shifted']}/{r['n_batches']}  flagged {r['flagged_fraction_mean']:.3f}"
                      f"  flag p~{r['flag_p_median']:.2g}  mmd p~{r['mmd_p_median']:.2g}"
                      f"  effect {r['mmd_effect_mean']:.3f}" + (f"  BH rejected {r['bh_rejected']}" if "bh_rejected" in r else ""))
        print(f"seconds per check: {out['batch_checks']['seconds_per_check']:.2f}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small smoke run")
    ap.add_argument("--out", default=str(ROOT / "results" / "novelty.json"))
    ap.add_argument("--only", nargs="*", help="run only these sections")
    args = ap.parse_args(argv)
    sections = {"fmnist_vs_mnist": protocol_fmnist_mnist, "one_class": protocol_one_class,
                "pneumonia": protocol_pneumonia, "throughput": throughput,
                "mahalanobis_memory": mahalanobis_memory, "mmd_timing": mmd_timing,
                "batch_checks": batch_checks}
    out = {"quick": args.quick, "python": sys.version.split()[0], "machine": platform.machine(),
           "seconds": {}}
    for name, fn in sections.items():
        if args.only and name not in args.only:
            continue
        t = time.perf_counter()
        fn(args.quick, out)
        out["seconds"][name] = time.perf_counter() - t
        print(f"[{name}: {out['seconds'][name]:.1f}s]", file=sys.stderr, flush=True)
    try:
        from curate.provenance import versions
        out["versions"] = versions()
    except Exception:  # noqa: BLE001 - provenance is optional for the benchmark
        pass
    print_tables(out)
    path = Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1, default=float))
    print(f"\nsaved {path}")


if __name__ == "__main__":
    main()
