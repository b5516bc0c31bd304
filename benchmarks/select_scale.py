"""Every selection strategy on a large pool: seconds and peak memory, no N x N matrix.

Usage: python benchmarks/select_scale.py [--n 1000000] [--dim 128] [--budget 500]
       [--labelled 1000] [--strategies ...] [--out benchmarks/results/select_scale.json]

Data: a mixture of 50 Gaussians in ``dim`` dimensions (float32, seeded), ``--labelled``
of its rows labelled by their component (10 classes) and passed as seeds. Each strategy
runs in a fresh subprocess, so its peak resident memory (``ru_maxrss``) is its own; the
embeddings alone take N * dim * 4 bytes (512 MB at 1M x 128). An N x N float32 matrix
would need 4 TB at 1M, so a peak within a small multiple of the data shows none is built.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent


def make_data(n: int, dim: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((50, dim), dtype=np.float32) * 3
    comp = rng.integers(50, size=n)
    X = rng.standard_normal((n, dim), dtype=np.float32)    # in place: the data is the peak
    for s in range(0, n, 1 << 16):
        X[s:s + (1 << 16)] += centres[comp[s:s + (1 << 16)]]
    return X, (comp % 10).astype(np.int64)


def one(name: str, n: int, dim: int, budget: int, labelled: int) -> dict:
    from curate.select import SELECTORS

    X, y = make_data(n, dim)
    seeds = np.random.default_rng(1).choice(n, labelled, replace=False) if labelled else None
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t = time.perf_counter()
    p = SELECTORS.get(name)(X, budget, seeds, y[seeds] if labelled else None, random_state=0,
                            device="cpu")
    secs = time.perf_counter() - t
    assert len(set(p.indices.tolist())) == budget
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"strategy": name, "seconds": round(secs, 2), "peak_rss_mb": round(peak),
            "rss_before_mb": round(base), "info": {k: v for k, v in p.info.items()
                                                    if not isinstance(v, list)}}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--budget", type=int, default=500)
    ap.add_argument("--labelled", type=int, default=1000)
    ap.add_argument("--strategies", default="random,kcenter,typiclust,kcenter-typical,margin,"
                                            "entropy,badge,auto,probcover")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    ap.add_argument("--out", default=str(ROOT / "results" / "select_scale.json"))
    a = ap.parse_args(argv)
    if a.one:
        print(json.dumps(one(a.one, a.n, a.dim, a.budget, a.labelled)))
        return 0
    rows = []
    for name in a.strategies.split(","):
        r = subprocess.run([sys.executable, __file__, "--one", name, "--n", str(a.n), "--dim",
                            str(a.dim), "--budget", str(a.budget), "--labelled", str(a.labelled)],
                           capture_output=True, text=True)
        row = json.loads(r.stdout.strip().splitlines()[-1]) if r.returncode == 0 else \
            {"strategy": name, "error": r.stderr.strip().splitlines()[-1:]}
        rows.append(row)
        print(json.dumps(row), flush=True)
    doc = {"benchmark": "select_scale", "n": a.n, "dim": a.dim, "budget": a.budget,
           "labelled": a.labelled, "data_mb": round(a.n * a.dim * 4 / 2**20),
           "machine": f"{platform.machine()}, {os.cpu_count()} cores", "rows": rows}
    Path(a.out).write_text(json.dumps(doc, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
