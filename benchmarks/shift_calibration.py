"""Batch-shift test calibration: false alarms of ``check_batch``'s verdict on real
in-distribution batches, its power on shifted batches, MMD timing.

Usage: python benchmarks/shift_calibration.py [--batches 1000] [--power-batches 20]
       [--no-encoder | --no-pca] [--no-alibi] [--out benchmarks/results/shift_calibration.json]

Data: Fashion-MNIST (train + test, 70k). 10k training images are set aside to fit the
embedding; the other 60k are the in-distribution pool. Embeddings:
``pixels-pca`` = PCA-64 of pixels / 255 fitted on the 10k; ``small-cnn`` = the 64-d
penultimate layer of a small CNN trained (plain torch, supervised, 2 epochs on CPU)
on the same 10k; none of the pool was seen by either.

False alarms: per draw the pool is reshuffled into a calibration set (the first
n_cal of 10k), a batch (the first m of 2k) and a reference (``--n-ref``, 5k); a Mahalanobis
scorer is fitted on the reference, a conformal threshold at alpha on the calibration
scores, and the verdict is ``check_batch``'s: Bonferroni of the beta-binomial
flag-count test and the MMD permutation test (reference subsampled to ``--mmd-ref``
rows, ``--mmd-perm`` permutations; the permutation test's level does not depend on
either). One MMD p-value per (draw, m) is shared by the four calibration sizes. The
rate of "shifted" verdicts is reported with a Wilson 95% interval, next to the flag
test alone, the MMD test alone and the binomial flag test this replaced.

Power: batches of 500 from 5k held-out Fashion-MNIST test images (not in any
reference or calibration set), with 5/10/20/100% MNIST test images mixed in, rotated
by 90 degrees, Gaussian pixel noise (sd 0.1 of the range) or darkened (x 0.7): the
rate of "shifted" verdicts at alpha, and alibi-detect's ``MMDDrift`` (PyTorch
backend, benchmark-only install, ``p_val`` = alpha) on the same embeddings and
reference subsample.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
from scipy.stats import binom
from sklearn.decomposition import PCA

from curate.datasets import load_fashion_mnist, load_mnist
from curate.novelty import make_scorer
from curate.novelty.calibration import ConformalCalibrator
from curate.novelty.shift import calibrator_flag_test, check_batch, mmd_test
from curate.provenance import versions

ROOT = Path(__file__).resolve().parent
N_CALS, BATCHES, N_FIT = (100, 300, 1000, 10_000), (100, 500, 2000), 10_000


def wilson(k: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    p = k / n
    c, h = p + z * z / (2 * n), z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    d = 1 + z * z / n
    return float((c - h) / d), float((c + h) / d)


def rate(flags) -> dict:
    k, n = int(np.sum(flags)), len(flags)
    lo, hi = wilson(k, n)
    return {"rate": k / n, "k": k, "n": n, "ci95": [lo, hi]}


def flat(images) -> np.ndarray:
    return images.reshape(len(images), -1).astype(np.float32) / 255.0


def cnn_embedder(x_fit, y_fit, seed=0, epochs=2):
    """Train a small CNN (supervised, 10 classes) on x_fit; return images -> 64-d."""
    import torch
    from torch import nn

    torch.manual_seed(seed)
    torch.set_num_threads(1)
    body = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(32 * 49, 64), nn.ReLU())
    net = nn.Sequential(body, nn.Linear(64, 10))
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    X = torch.from_numpy(flat(x_fit).reshape(-1, 1, 28, 28))
    Y = torch.from_numpy(np.asarray(y_fit, np.int64))
    for _ in range(epochs):
        for idx in torch.randperm(len(X)).split(128):
            opt.zero_grad()
            nn.functional.cross_entropy(net(X[idx]), Y[idx]).backward()
            opt.step()
    body.eval()

    def embed(images):
        with torch.no_grad():
            t = torch.from_numpy(flat(images).reshape(-1, 1, 28, 28))
            return np.concatenate([body(b).numpy() for b in t.split(2048)]).astype(np.float32)
    return embed


def shifted_sources(x_power, x_mnist, rng):
    """name -> (images to draw shifted batches from, share of the batch drawn there)."""
    noisy = np.clip(x_power + rng.normal(0, 25.5, x_power.shape), 0, 255).astype(np.uint8)
    return {"mnist 5%": (x_mnist, 0.05), "mnist 10%": (x_mnist, 0.10),
            "mnist 20%": (x_mnist, 0.20), "mnist 100%": (x_mnist, 1.0),
            "rotation 90": (np.rot90(x_power, 1, axes=(1, 2)).copy(), 1.0),
            "gaussian noise sd 0.1": (noisy, 1.0),
            "brightness x0.7": ((x_power * 0.7).astype(np.uint8), 1.0)}


def false_alarms(E, args, rng) -> dict:
    """Per (n_cal, m) cell: rates of the combined verdict and of each test."""
    a = args.alpha
    cells = {(c, m): {"combined": [], "flag": [], "mmd": [], "old_binomial": []}
             for c in N_CALS for m in BATCHES}
    t0 = time.perf_counter()
    for i in range(args.batches):
        if i % 100 == 0:
            print(f"  draw {i} ({time.perf_counter() - t0:.0f} s)", flush=True)
        perm = rng.permutation(len(E))
        cal_i, bat_i = perm[:max(N_CALS)], perm[max(N_CALS):max(N_CALS) + max(BATCHES)]
        ref = E[perm[max(N_CALS) + max(BATCHES):][:args.n_ref]]
        sc = make_scorer("mahalanobis").fit(ref)
        s_cal, s_bat = sc.score_samples(E[cal_i]), sc.score_samples(E[bat_i])
        p_mmd = {m: mmd_test(ref, E[bat_i[:m]], n_permutations=args.mmd_perm,
                             max_ref=args.mmd_ref, random_state=int(rng.integers(1 << 31)))
                 ["p_value"] for m in BATCHES}
        for c in N_CALS:
            cal = ConformalCalibrator(a).fit(s_cal[:c])
            for m in BATCHES:
                ft = calibrator_flag_test(cal, s_bat[:m])
                d = cells[(c, m)]
                d["flag"].append(ft["p_value"] <= a / 2)
                d["mmd"].append(p_mmd[m] <= a / 2)
                d["combined"].append(min(1.0, 2 * min(ft["p_value"], p_mmd[m])) <= a)
                old = binom.sf(ft["n_flagged"] - 1, m, a)
                d["old_binomial"].append(min(1.0, 2 * min(old, p_mmd[m])) <= a)
    out = []
    for (c, m), d in cells.items():
        row = {"n_cal": c, "batch": m, **{k: rate(v) for k, v in d.items()}}
        row["pass"] = row["combined"]["rate"] <= a and row["combined"]["ci95"][1] <= 1.25 * a
        out.append(row)
    return {"cells": out, "seconds": time.perf_counter() - t0}


def alibi_detector(ref, args):
    """alibi-detect MMDDrift (PyTorch backend) on ``ref``; call it with (batch, seed) -> p."""
    import torch
    from alibi_detect.cd import MMDDrift

    det = MMDDrift(ref, backend="pytorch", p_val=args.alpha, n_permutations=args.mmd_perm,
                   device="cpu")

    def p_value(batch, seed):
        torch.manual_seed(seed)
        return float(det.predict(batch)["data"]["p_val"])
    return p_value


def power(E_pool, embed, x_power, x_mnist, args, rng) -> dict:
    """Detection rate per shift kind, ours (combined verdict) and alibi-detect MMDDrift."""
    a, m = args.alpha, 500
    perm = rng.permutation(len(E_pool))
    cal_X, ref = E_pool[perm[:1000]], E_pool[perm[1000:1000 + args.n_ref]]
    sc = make_scorer("mahalanobis").fit(ref)
    cal = ConformalCalibrator(a).fit(sc.score_samples(cal_X))
    mmd_ref = ref[rng.choice(len(ref), args.mmd_ref, replace=False)]
    E_power = embed(x_power)
    alibi_p = None if args.no_alibi else alibi_detector(mmd_ref, args)
    kinds = {"in-distribution": (None, 0.0), **shifted_sources(x_power, x_mnist, rng)}
    res = {}
    for name, (src, share) in kinds.items():
        E_src = None if src is None else embed(src)
        ours, alibi, t_ours, t_alibi = [], [], 0.0, 0.0
        for _ in range(args.power_batches):
            k = int(round(share * m))
            rows = [E_power[rng.choice(len(E_power), m - k, replace=False)]]
            if k:
                rows.append(E_src[rng.choice(len(E_src), k, replace=False)])
            B = np.concatenate(rows)
            seed = int(rng.integers(1 << 31))
            t = time.perf_counter()
            r = check_batch(mmd_ref, B, cal, sc.score_samples(B), alpha=a,
                            n_permutations=args.mmd_perm, max_ref=None, random_state=seed)
            t_ours += time.perf_counter() - t
            ours.append(r["verdict"] == "shifted")
            if not args.no_alibi:
                t = time.perf_counter()
                alibi.append(alibi_p(B, seed) <= a)
                t_alibi += time.perf_counter() - t
        res[name] = {"ours": rate(ours), "ours_seconds_per_batch": t_ours / len(ours)}
        if alibi:
            res[name].update(alibi_mmddrift=rate(alibi), alibi_seconds_per_batch=t_alibi / len(alibi))
    return res


def mmd_timing(E, args, rng) -> dict:
    """mmd_test on a 10k reference, 2k batch, 1000 permutations (the check-batch default)."""
    perm = rng.permutation(len(E))
    ref, bat = E[perm[:10_000]], E[perm[10_000:12_000]]
    t, c = time.perf_counter(), time.process_time()
    r = mmd_test(ref, bat, n_permutations=1000, random_state=0)
    return {"n_ref": 10_000, "n_batch": 2000, "n_permutations": 1000, "dim": int(E.shape[1]),
            "seconds": time.perf_counter() - t, "cpu_seconds": time.process_time() - c,
            "load_average_1min": os.getloadavg()[0], "p_value": r["p_value"], "target_seconds": 10}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batches", type=int, default=1000)
    ap.add_argument("--power-batches", type=int, default=20)
    ap.add_argument("--alpha", type=float, default=0.05)
    ap.add_argument("--n-ref", type=int, default=5000, help="scorer reference size")
    ap.add_argument("--mmd-ref", type=int, default=500)
    ap.add_argument("--mmd-perm", type=int, default=100)
    ap.add_argument("--no-encoder", action="store_true", help="skip the small-cnn embedding")
    ap.add_argument("--no-pca", action="store_true", help="skip the pixels-pca embedding")
    ap.add_argument("--no-alibi", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(ROOT / "results" / "shift_calibration.json"))
    args = ap.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    xtr, ytr = load_fashion_mnist("train")
    xte, _ = load_fashion_mnist("test")
    xmn, _ = load_mnist("test")
    fit_i = rng.permutation(len(xtr))[:N_FIT]
    rest = np.setdiff1d(np.arange(len(xtr)), fit_i)
    x_power, x_pool = xte[:5000], np.concatenate([xtr[rest], xte[5000:]])  # power: 5k unseen
    pca = PCA(64, svd_solver="randomized", random_state=0).fit(flat(xtr[fit_i]))
    embedders = {} if args.no_pca else {
        "pixels-pca": lambda im: pca.transform(flat(im)).astype(np.float32)}
    t = time.perf_counter()
    if not args.no_encoder:
        embedders["small-cnn"] = cnn_embedder(xtr[fit_i], ytr[fit_i], seed=args.seed)
    train_s = time.perf_counter() - t
    out = {"benchmark": "shift_calibration", "params": vars(args), "n_cals": N_CALS,
           "batch_sizes": BATCHES, "n_fit_embedding": N_FIT,
           "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                       "python": platform.python_version()},
           "versions": versions(), "cnn_train_seconds": train_s, "embeddings": {}}
    for name, embed in embedders.items():
        E = embed(x_pool)
        res = {"mmd_timing": mmd_timing(E, args, rng)}
        print(f"[{name}] MMD 10k ref + 2k batch, 1000 permutations: "
              f"{res['mmd_timing']['seconds']:.2f} s wall, {res['mmd_timing']['cpu_seconds']:.2f} s CPU "
              f"(load {res['mmd_timing']['load_average_1min']:.1f})", flush=True)
        res["false_alarms"] = fa = false_alarms(E, args, rng)
        print(f"[{name}] false alarms over {args.batches} in-distribution batches per cell "
              f"(alpha = {args.alpha}; {fa['seconds']:.0f} s)")
        print(f"{'n_cal':>6} {'batch':>5} | {'combined':>8} {'95% CI':>15} | {'flag':>6} "
              f"{'mmd':>6} | {'old binom':>9} | pass")
        for c in fa["cells"]:
            cb = c["combined"]
            print(f"{c['n_cal']:>6} {c['batch']:>5} | {cb['rate']:>8.4f} "
                  f"[{cb['ci95'][0]:.4f},{cb['ci95'][1]:.4f}] | {c['flag']['rate']:>6.4f} "
                  f"{c['mmd']['rate']:>6.4f} | {c['old_binomial']['rate']:>9.4f} | {c['pass']}")
        out["embeddings"][name] = res
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(out, indent=1, default=float))  # partial
        if not args.power_batches:
            continue
        res["power"] = pw = power(E, embed, x_power, xmn, args, rng)
        print(f"[{name}] detection rate, batches of 500, {args.power_batches} per row")
        for k, v in pw.items():
            al = v.get("alibi_mmddrift")
            print(f"{k:>24} | ours {v['ours']['rate']:.3f} ({v['ours_seconds_per_batch']:.2f} s)"
                  + (f" | alibi MMDDrift {al['rate']:.3f} ({v['alibi_seconds_per_batch']:.2f} s)"
                     if al else ""), flush=True)
        out["embeddings"][name] = res
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(out, indent=1, default=float))  # after each part
    print(f"written: {args.out}")
    return out


if __name__ == "__main__":
    main()
