"""Storing scores: ``Index.upsert_scores`` by COPY vs by executemany upserts (issue 14).

Usage:
  python benchmarks/score_upsert.py [--n 200000] [--repeats 3] [--db postgres,sqlite]

``curate score`` ends by upserting one row per scored image. On PostgreSQL that was an
executemany of ``INSERT ... ON CONFLICT DO UPDATE`` (psycopg pipelines it, but the server
still plans and runs one statement per row); it is now ``COPY`` into a temporary table and
one ``INSERT ... SELECT ... ON CONFLICT``. One fresh index per database (a PostgreSQL
schema of its own, as in ingest_bound.py) holds n image rows and one scorer; each repeat
times, in this order and in one process, a first insert and then a full replace of the
same n rows, by each path (``copy=True`` / ``copy=False``), alternating, on the same
table. Medians over repeats and the ratio executemany / COPY are printed and written to
``results/score_upsert.json``. SQLite has one path (executemany) and is shown for scale.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from sqlalchemy import delete, insert

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from helpers import bare_scorer  # noqa: E402
from ingest_bound import Database  # noqa: E402

from curate.db.models import Image, Score  # noqa: E402

OUT = Path(__file__).resolve().parent / "results" / "score_upsert.json"


def prepare(index, n: int) -> tuple[int, np.ndarray]:
    with index.session() as s:
        scorer_id = bare_scorer(s, kind="mahalanobis")
    with index.session() as s:
        for i in range(0, n, 50_000):
            s.execute(insert(Image), [{"path": f"/img/{j}.png", "status": "ok"}
                                      for j in range(i, min(n, i + 50_000))])
    with index.session() as s:
        ids = np.sort(np.fromiter(s.scalars(Image.__table__.select().with_only_columns(
            Image.id)), dtype=np.int64))
    return scorer_id, ids


def one(index, scorer_id, ids, copy: bool, rng) -> dict:
    n = len(ids)
    out = {}
    for what in ("insert", "replace"):
        if what == "insert":
            with index.session() as s:
                s.execute(delete(Score))
        t = time.perf_counter()
        index.upsert_scores(scorer_id, ids, rng.normal(size=n), rng.uniform(size=n),
                            rng.uniform(size=n) < 0.1, dt.datetime(2026, 12, 3), copy=copy)
        out[what] = time.perf_counter() - t
    with index.session() as s:
        assert s.query(Score).count() == n
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--db", default="postgres,sqlite")
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    res = {"benchmark": "score_upsert", "n": args.n, "repeats": args.repeats,
           "machine": f"{platform.machine()}, {os.cpu_count()} cores",
           "load_before": round(os.getloadavg()[0], 1), "databases": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for kind in args.db.split(","):
            with Database(kind, Path(tmp)) as db:
                index = db.ws.open_index()
                scorer_id, ids = prepare(index, args.n)
                paths = {"copy": True, "executemany": False} if kind == "postgres" else \
                    {"executemany": False}
                runs = {p: [] for p in paths}
                for _ in range(args.repeats):
                    for p, flag in paths.items():
                        runs[p].append(one(index, scorer_id, ids, flag, rng))
                index.close()
            med = {p: {w: round(statistics.median(r[w] for r in rs), 3)
                       for w in ("insert", "replace")} for p, rs in runs.items()}
            row = {"median_seconds": med,
                   "all_seconds": {p: [{w: round(v, 3) for w, v in r.items()} for r in rs]
                                   for p, rs in runs.items()}}
            if "copy" in med:
                row["executemany_over_copy"] = {
                    w: round(med["executemany"][w] / med["copy"][w], 2) for w in ("insert", "replace")}
            res["databases"][kind] = row
            print(kind, json.dumps(med), row.get("executemany_over_copy", ""), flush=True)
    OUT.write_text(json.dumps(res, indent=1) + "\n")
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
