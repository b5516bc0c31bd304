"""Ingest against its floor: Pillow decode + sha256 alone on the same files (issue 14).

Usage:
  python benchmarks/ingest_bound.py --n 10000 [--db sqlite,postgres] [--repeats 3] [--cli]
  python benchmarks/ingest_bound.py --n 10000 --profile sqlite   # cProfile of one ingest
  INGEST_BOUND_CODE=/tmp/old python benchmarks/ingest_bound.py --label before
      # the ``curate`` package from /tmp/old/curate (an earlier version) instead

The PNGs are the scale benchmark's (``scale.py images``: Fashion-MNIST 28x28, parts of
1,000 under ``WORK/img``); they are written first when missing. One repeat measures, in
this order and in one process: (a) the bound: every file read once, sha256 of its bytes,
``PIL.Image.open(...).load()`` (a full decode) from the same bytes, on a thread pool of
ingest's default size, just before and just after each (b); (b) ``curate.ingest.ingest``
on a fresh index, the library call alone (no interpreter start-up, no migrations), per
database; optionally (c) ``curate ingest`` as a fresh process (start-up and migrations
included). Wall and CPU seconds (this process, all threads) are both kept: on a shared
machine CPU time is the steadier of the two. Ratios are ingest over the mean of the two
bounds around it (a noisy neighbour hits both sides), then the median over repeats;
``best`` is the fastest ingest over the fastest bound (other jobs only ever add time).

PostgreSQL runs in a schema of its own (``search_path``, as tests/conftest.py does),
dropped afterwards. Results go to ``results/ingest_bound.json``.
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import inspect
import io
import json
import os
import platform
import pstats
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

CODE = os.environ.get("INGEST_BOUND_CODE") or str(Path(__file__).resolve().parent.parent)
sys.path.insert(0, CODE)
sys.path.insert(0, str(Path(__file__).resolve().parent))

from scale import DEFAULT_WORK, PART, make_images, part_dir  # noqa: E402

from curate.ingest import ingest  # noqa: E402
from curate.workspace import init_workspace  # noqa: E402

OUT = Path(__file__).resolve().parent / "results" / "ingest_bound.json"
PG = os.environ.get("CURATE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
WORKERS = inspect.signature(ingest).parameters["workers"].default


def files_of(work: Path, n: int) -> list[str]:
    return [str(p) for k in range(n // PART) for p in sorted(part_dir(work, k).glob("*.png"))]


def bound(files: list[str], threads: int) -> tuple[float, float]:
    """Wall and CPU seconds (this process, all threads) to read, sha256 and fully decode
    every file: the floor of ingest."""
    from PIL import Image

    def one(p):
        with open(p, "rb") as f:
            b = f.read()
        h = hashlib.sha256(b).hexdigest()
        with Image.open(io.BytesIO(b)) as im:
            im.load()
        return h

    # a task per 256 files, as ingest hands out slices: no per-file future in the floor
    slices = [files[i:i + 256] for i in range(0, len(files), 256)]
    t, c = time.perf_counter(), time.process_time()
    with ThreadPoolExecutor(threads) as ex:
        list(ex.map(lambda sl: [one(p) for p in sl], slices))
    return time.perf_counter() - t, time.process_time() - c


class Database:
    """A fresh index per use: a SQLite file, or a PostgreSQL schema of its own."""

    def __init__(self, kind: str, tmp: Path):
        self.kind, self.tmp, self.schema = kind, tmp, None

    def __enter__(self):
        from sqlalchemy import create_engine, text

        url = None
        if self.kind == "postgres":
            self.schema = f"bench_{uuid.uuid4().hex[:12]}"
            eng = create_engine(PG)
            with eng.begin() as c:
                c.execute(text(f'CREATE SCHEMA "{self.schema}"'))
            eng.dispose()
            url = f"{PG}{'&' if '?' in PG else '?'}options=-csearch_path%3D{self.schema}"
        self.root = self.tmp / f"ws-{uuid.uuid4().hex[:8]}"
        self.ws = init_workspace(self.root, db=url)
        self.url = url
        return self

    def __exit__(self, *exc):
        from sqlalchemy import create_engine, text

        shutil.rmtree(self.root, ignore_errors=True)
        if self.schema:
            eng = create_engine(PG)
            with eng.begin() as c:
                c.execute(text(f'DROP SCHEMA "{self.schema}" CASCADE'))
            eng.dispose()


def lib_ingest(db: Database, folders: list[str], n: int) -> tuple[float, float]:
    """Wall and CPU seconds (this process; not the PostgreSQL server's) of one ingest call."""
    index = db.ws.open_index()
    try:
        t, c = time.perf_counter(), time.process_time()
        rep = ingest(index, folders, batch="pool")
        secs, cpu = time.perf_counter() - t, time.process_time() - c
    finally:
        index.close()
    assert rep.added == n and not rep.rejected, rep.as_dict()
    return secs, cpu


def cli_ingest(db: Database, folders: list[str], n: int) -> float:
    env = dict(os.environ, CURATE_NO_PROGRESS="1", PYTHONPATH=CODE)
    env.pop("CURATE_WORKSPACE", None)
    env.pop("CURATE_DB", None)
    db_args = ["--db", db.url] if db.url else []
    t = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "curate", "-w", str(db.root), *db_args, "ingest",
                        *folders, "--batch", "pool", "--json"], env=env, capture_output=True,
                       text=True, cwd=db.root.parent)   # not the repository: CODE decides
    secs = time.perf_counter() - t
    assert r.returncode == 0 and json.loads(r.stdout)["added"] == n, r.stderr[-2000:]
    return secs


def profile(work: Path, n: int, kind: str, top: int) -> None:
    folders = [str(part_dir(work, k)) for k in range(n // PART)]
    with tempfile.TemporaryDirectory() as tmp, Database(kind, Path(tmp)) as db:
        index = db.ws.open_index()
        pr = cProfile.Profile()
        pr.enable()
        ingest(index, folders, batch="pool")
        pr.disable()
        index.close()
    st = pstats.Stats(pr)
    st.sort_stats("cumulative").print_stats(top)
    st.sort_stats("tottime").print_stats(top)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10000)
    ap.add_argument("--db", default="sqlite,postgres")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--cli", action="store_true", help="also time `curate ingest` as a process")
    ap.add_argument("--work", type=Path, default=DEFAULT_WORK)
    ap.add_argument("--profile", choices=["sqlite", "postgres"])
    ap.add_argument("--top", type=int, default=35)
    ap.add_argument("--label", default="", help="stored with the result (e.g. before/after)")
    a = ap.parse_args(argv)
    make_images(a.work, a.n)
    if a.profile:
        profile(a.work, a.n, a.profile, a.top)
        return 0
    files = files_of(a.work, a.n)
    assert len(files) == a.n, f"found {len(files)} of {a.n} PNGs under {a.work}"
    folders = [str(part_dir(a.work, k)) for k in range(a.n // PART)]
    dbs = a.db.split(",")
    bound(files[:2000], WORKERS)  # warm the page cache and Pillow's plugins
    reps = []
    with tempfile.TemporaryDirectory(dir=a.work) as tmp:
        for r in range(a.repeats):
            row = {"load_avg_1m": round(os.getloadavg()[0], 2)}
            row["bound_1_thread_s"], row["bound_1_thread_cpu_s"] = bound(files, 1)
            for kind in dbs:
                # the bound just before and just after each ingest: their mean is its floor
                b1 = bound(files, WORKERS)
                with Database(kind, Path(tmp)) as db:
                    wall, cpu = lib_ingest(db, folders, a.n)
                b2 = bound(files, WORKERS)
                row[f"bound_{kind}_s"] = (b1[0] + b2[0]) / 2
                row[f"bound_{kind}_cpu_s"] = (b1[1] + b2[1]) / 2
                row[f"ingest_{kind}_s"], row[f"ingest_{kind}_cpu_s"] = wall, cpu
                row[f"ratio_{kind}"] = wall / row[f"bound_{kind}_s"]
                row[f"ratio_{kind}_cpu"] = cpu / row[f"bound_{kind}_cpu_s"]
                if a.cli:
                    with Database(kind, Path(tmp)) as db:
                        row[f"cli_{kind}_s"] = cli_ingest(db, folders, a.n)
            row = {k: round(v, 3) for k, v in row.items()}
            row["load_avg_1m_after"] = round(os.getloadavg()[0], 2)
            print(json.dumps(row), flush=True)
            reps.append(row)
    med = {k: round(statistics.median(r[k] for r in reps), 3) for k in reps[0]}
    # best of the repeats: interference from other jobs only ever adds time
    best = {f"ratio_{kind}": round(min(r[f"ingest_{kind}_s"] for r in reps)
                                   / min(r[f"bound_{kind}_s"] for r in reps), 3) for kind in dbs}
    best |= {k: min(r[k] for r in reps) for k in reps[0] if k.endswith("_s")}
    result = {"n": a.n, "label": a.label, "threads": WORKERS, "code": inspect.getsourcefile(ingest),
              "repeats": reps, "median": med, "best": best,
              "machine": f"{platform.machine()}, {os.cpu_count()} cores (shared)",
              "when": time.strftime("%Y-%m-%d %H:%M:%S"),
              "python": platform.python_version()}
    print(json.dumps({"n": a.n, "label": a.label, "median": med, "best": best}), flush=True)
    doc = json.loads(OUT.read_text()) if OUT.exists() else {"benchmark": "ingest_bound", "runs": []}
    doc["runs"].append(result)
    OUT.write_text(json.dumps(doc, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
