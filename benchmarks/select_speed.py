"""k-center greedy speed: curate vs two per-step baselines, against memory bandwidth.

One process, float32 data from a fixed seed, CPU only:

- ours: ``curate.select.kcenter.kcenter_greedy(X, k, device="cpu")``
- (a) naive numpy: ``((X - c) ** 2).sum(1)`` per step with a running minimum
- (b) sklearn: ``pairwise_distances(X, X[[c]])`` per step with a running minimum, as in
  Google's active-learning ``kCenterGreedy``
- bandwidth: best read rate of large reductions (numpy ``sum`` on one thread, numpy
  ``sum`` split over all cores, torch ``sum``); bound = ``k * N * d * 4 bytes / bandwidth``
- seeded: ``--seeds`` random labelled rows, seeding + selection (and seeding alone)

    python benchmarks/select_speed.py                      # N=1M, d=128, k=500, 5000 seeds
    python benchmarks/select_speed.py --n 20000 --k 50 --seeds 500 --out /tmp/s.json

Writes ``benchmarks/results/select_speed.json`` (``--out`` to change) and prints a table.
The machine should be otherwise idle: memory bandwidth is shared.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from curate.select.kcenter import kcenter_greedy  # noqa: E402

TARGET_BOUND_RATIO = 1.3
TARGET_SPEEDUP_SKLEARN = 5.0
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "select_speed.json"


def best_time(fn, repeats):
    times, out = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), out


def bandwidth(X, repeats=3):
    """Read GB/s of large reductions over >= 512 MB; the best one is the bound."""
    A = X if X.nbytes >= 512 * 2**20 else np.ones(2**27, np.float32)  # 512 MB, real pages
    flat = A.reshape(-1)
    parts = np.array_split(flat, os.cpu_count() or 1)
    rates = {}
    with ThreadPoolExecutor(len(parts)) as ex:  # numpy releases the GIL in reductions
        cases = {"numpy_sum_1thread": lambda: flat.sum(),
                 f"numpy_sum_{len(parts)}threads": lambda: sum(ex.map(np.sum, parts))}
        try:
            import torch

            T = torch.from_numpy(flat)
            cases[f"torch_sum_{torch.get_num_threads()}threads"] = lambda: T.sum()
        except ImportError:
            pass
        for name, fn in cases.items():
            rates[name] = A.nbytes / best_time(fn, repeats)[0] / 1e9
    return max(rates.values()), rates, A.nbytes


def naive_numpy(X, k, first):
    """(a) the textbook loop: a full (X - c) temporary per step."""
    min_d = np.full(len(X), np.inf, np.float32)
    picks = [first]
    for _ in range(k - 1):
        d = ((X - X[picks[-1]]) ** 2).sum(axis=1)
        min_d = np.minimum(min_d, d)
        picks.append(int(np.argmax(min_d)))
    return np.array(picks)


def sklearn_google(X, k, first):
    """(b) google-research/active-learning kcenter_greedy.update_distances per step."""
    from sklearn.metrics import pairwise_distances

    min_d = None
    picks = [first]
    for _ in range(k - 1):
        dist = pairwise_distances(X, X[[picks[-1]]], metric="euclidean")
        min_d = dist if min_d is None else np.minimum(min_d, dist)
        picks.append(int(np.argmax(min_d)))
    return np.array(picks)


def first_divergence(a, b):
    diff = np.flatnonzero(np.asarray(a) != np.asarray(b)[: len(a)])
    return None if diff.size == 0 else int(diff[0])


def machine_info():
    info = {"cpu_count": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version(), "numpy": np.__version__}
    try:
        with open("/proc/cpuinfo") as f:
            info["cpu"] = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        info["cpu"] = platform.processor()
    for mod in ("torch", "sklearn"):
        try:
            info[mod] = __import__(mod).__version__
        except ImportError:
            info[mod] = None
    try:
        from threadpoolctl import threadpool_info

        info["blas"] = [{k: p.get(k) for k in ("internal_api", "version", "num_threads")}
                        for p in threadpool_info()]
    except ImportError:
        pass
    return info


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=1_000_000)
    p.add_argument("--d", type=int, default=128)
    p.add_argument("--k", type=int, default=500)
    p.add_argument("--seeds", type=int, default=5000, help="labelled rows for the seeded case (0: skip)")
    p.add_argument("--repeats", type=int, default=1, help="best of this many runs of ours")
    p.add_argument("--baseline-steps", type=int, default=None,
                   help="run the baselines for this many steps and extrapolate linearly (default: all k)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    a = p.parse_args(argv)

    load_before = os.getloadavg()
    rng = np.random.default_rng(a.seed)
    X = rng.standard_normal((a.n, a.d), dtype=np.float32)
    first = int(np.random.default_rng(a.seed).integers(a.n))  # ours picks the same first row
    bw, bw_rates, bw_bytes = bandwidth(X)
    bound = a.k * a.n * a.d * 4 / (bw * 1e9)

    t_ours, (ours, _) = best_time(lambda: kcenter_greedy(X, a.k, device="cpu", random_state=a.seed), a.repeats)
    assert ours[0] == first
    steps = min(a.k, a.baseline_steps or a.k)
    t_a, naive = best_time(lambda: naive_numpy(X, steps, first), 1)
    t_b, sk = best_time(lambda: sklearn_google(X, steps, first), 1)
    scale = (a.k - 1) / max(steps - 1, 1)  # both do one pass per step after the first pick
    t_a, t_b = t_a * scale, t_b * scale

    res = {
        "params": {"n": a.n, "d": a.d, "k": a.k, "dtype": "float32", "seed": a.seed, "repeats": a.repeats},
        "bandwidth_gb_s": bw, "bandwidth_by_method_gb_s": bw_rates, "bandwidth_array_bytes": bw_bytes,
        "bound_s": bound, "x_bytes": X.nbytes,
        "bound_note": None if X.nbytes >= 256 * 2**20 else "X is under 256 MiB and may sit in cache: bound not meaningful",
        "ours_s": t_ours, "ours_gb_s": a.k * a.n * a.d * 4 / t_ours / 1e9, "ours_over_bound": t_ours / bound,
        "naive_numpy_s": t_a, "sklearn_pairwise_s": t_b,
        "speedup_vs_naive_numpy": t_a / t_ours, "speedup_vs_sklearn": t_b / t_ours,
        "first_divergence_step": {"naive_numpy": first_divergence(naive, ours),
                                  "sklearn": first_divergence(sk, ours)},
        "targets": {"ours_over_bound_max": TARGET_BOUND_RATIO, "speedup_vs_sklearn_min": TARGET_SPEEDUP_SKLEARN},
    }
    if steps < a.k:
        res["extrapolated_from_steps"] = steps
    if a.seeds:
        seeds = rng.choice(a.n, size=min(a.seeds, a.n - a.k), replace=False)
        t_seed, _ = best_time(lambda: kcenter_greedy(X, 1, seeds=seeds, device="cpu"), a.repeats)
        t_all, _ = best_time(lambda: kcenter_greedy(X, a.k, seeds=seeds, device="cpu"), a.repeats)
        res["seeded"] = {"seeds": len(seeds), "seeding_s": t_seed, "seeding_plus_selection_s": t_all,
                         "selection_s": t_all - t_seed, "selection_over_bound": (t_all - t_seed) / bound,
                         "seeding_gflop_s": 2 * a.n * len(seeds) * a.d / t_seed / 1e9}
    res["machine"] = machine_info()
    res["machine"]["loadavg_before"] = load_before
    res["machine"]["loadavg_after"] = os.getloadavg()

    ok = lambda b: "yes" if b else "NO"  # noqa: E731
    ext = f" (extrapolated from {steps} steps)" if steps < a.k else ""
    print(f"k-center greedy  N={a.n:,} d={a.d} k={a.k} float32, {res['machine']['cpu_count']} CPUs")
    print(f"memory read bandwidth {bw:.1f} GB/s (best of "
          + ", ".join(f"{k} {v:.1f}" for k, v in bw_rates.items()) + f"); bound {bound:.2f} s")
    if res["bound_note"]:
        print("note:", res["bound_note"])
    print(f"{'method':34s} {'seconds':>9s} {'ours faster by':>15s}")
    print(f"{'curate kcenter_greedy':34s} {t_ours:9.2f} {'':>15s}  {res['ours_gb_s']:.1f} GB/s, "
          f"{t_ours / bound:.2f}x bound (target <= {TARGET_BOUND_RATIO}: {ok(t_ours / bound <= TARGET_BOUND_RATIO)})")
    print(f"{'(a) naive numpy ((X-c)**2).sum(1)':34s} {t_a:9.2f} {t_a / t_ours:14.1f}x{ext}")
    print(f"{'(b) sklearn pairwise_distances':34s} {t_b:9.2f} {t_b / t_ours:14.1f}x{ext}  "
          f"(target >= {TARGET_SPEEDUP_SKLEARN}x: {ok(t_b / t_ours >= TARGET_SPEEDUP_SKLEARN)})")
    print(f"picks agree with (a) up to step {res['first_divergence_step']['naive_numpy']}, "
          f"(b) {res['first_divergence_step']['sklearn']} (None: all {steps})")
    if a.seeds:
        s = res["seeded"]
        print(f"seeded: {s['seeds']} seeds, seeding {s['seeding_s']:.2f} s ({s['seeding_gflop_s']:.0f} GFLOP/s), "
              f"seeding + selection {s['seeding_plus_selection_s']:.2f} s")
    print(f"load average before {load_before[0]:.2f}, after {res['machine']['loadavg_after'][0]:.2f}")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(res, indent=2) + "\n")
    print(f"wrote {a.out}")
    return res


if __name__ == "__main__":
    main()
