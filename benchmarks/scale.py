"""Cost curve: every pipeline step of the real CLI at growing N, SQLite and PostgreSQL.

Usage:
  python benchmarks/scale.py images --n 200000              # write the PNGs (once)
  python benchmarks/scale.py run --n 10000 --db sqlite      # one (size, database) cell
  python benchmarks/scale.py run --n 50000 --db postgres --no-cnn --no-ray
  python benchmarks/scale.py million --db sqlite            # 1M x 128 synthetic embeddings
  python benchmarks/scale.py bound --n 50000                # Pillow decode + sha256 alone
  python benchmarks/scale.py ingest --n 50000 --db sqlite   # ingest alone (after a change)
  python benchmarks/scale.py imports                        # start-up and import seconds
  python benchmarks/scale.py summarise                      # results/scale.json + .png, table

Raw measurements are appended to ``results/scale_runs.jsonl``; ``summarise`` keeps the latest
per (step, mode, database, size) in ``cells`` and every pass in ``all_runs``.

Each step is a fresh ``python -m curate.cli ...`` process (imports included, as a user
runs it); its wall time comes from the parent, its peak resident memory from
``os.wait4`` (``ru_maxrss`` of that process and the children it waited for; Ray's
actors are not its children, so for ``--ray local`` steps it is the driver's only).
Import time is measured separately (``curate --help``, and a process importing the
heavy libraries torch, faiss, scipy, sklearn) and reported next to the steps.

Images (``images``): parts of 1,000 PNGs in ``WORK/img/part-NNNNN/``. Image j < 70,000
is Fashion-MNIST (train then test) as written by ``curate.datasets``; above, image j is
Fashion-MNIST image ``j % 70000`` rolled ``j // 70000`` pixels to the right with its
first three pixels set to the bytes of j (so every file's bytes differ and dedup does
not fold them). Size N uses the first N / 1000 parts; the last tenth are ingested as
batch ``new`` (checked by ``check-batch``), the rest as ``pool``.

``million``: no images are decoded. 1M ``images`` rows (batches ``pool`` 900k and
``new`` 100k) are inserted with SQLAlchemy Core, their paths hard links to the
benchmark's PNGs (select and report check/read the picked files), their sha256 fake;
1M x 128 float32 embeddings (a 50-component Gaussian mixture, seeded) are stored through
``curate.embeddings.append_shard`` in shards of 100k rows, i.e. curate's own store. The
select kernels (kcenter and what ``auto`` runs) are then timed in-process on the same
array, next to the CLI steps.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent
REPO = ROOT.parent
PART = 1000
DEFAULT_WORK = Path("/tmp/curate-scale")
RESULTS = ROOT / "results" / "scale_runs.jsonl"


# ---------------------------------------------------------------- images
def part_dir(work: Path, k: int) -> Path:
    return work / "img" / f"part-{k:05d}"


def make_images(work: Path, n: int) -> float:
    from PIL import Image

    from curate.datasets import load_fashion_mnist

    X = np.concatenate([load_fashion_mnist("train")[0], load_fashion_mnist("test")[0]])
    t = time.perf_counter()
    for k in range(n // PART):
        d = part_dir(work, k)
        if (d / "DONE").exists():
            continue
        d.mkdir(parents=True, exist_ok=True)
        for j in range(k * PART, (k + 1) * PART):
            img = X[j % len(X)]
            if j >= len(X):
                img = np.roll(img, j // len(X), axis=1).copy()
                img.flat[:3] = [j & 255, (j >> 8) & 255, (j >> 16) & 255]
            Image.fromarray(img).save(d / f"{j:07d}.png")
        (d / "DONE").write_text("")
    return time.perf_counter() - t


# ---------------------------------------------------------------- measuring
def timed(cmd: list[str], cwd: Path, env: dict, log: Path) -> dict:
    """Run one CLI process; wall seconds, peak RSS (MB), return code, stdout."""
    t = time.perf_counter()
    with open(log, "a") as lf:
        lf.write("$ " + " ".join(cmd) + "\n")
        lf.flush()
        p = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=lf, text=True)
        out = p.stdout.read()
        _, status, ru = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
        lf.write(out[-3000:] + "\n")
    return {"seconds": round(time.perf_counter() - t, 3), "peak_mb": round(ru.ru_maxrss / 1024),
            "rc": p.returncode, "stdout": out}


def import_times(env: dict, cwd: Path) -> dict:
    py = sys.executable
    r = {}
    for name, code in [("cli_help", None),
                       ("python_bare", "pass"),
                       ("heavy_libs", "import torch, faiss, scipy.stats, sklearn.cluster")]:
        cmd = [py, "-m", "curate", "--help"] if code is None else [py, "-c", code]
        best = min(timed(cmd, cwd, env, Path(os.devnull))["seconds"] for _ in range(2))
        r[name] = round(best, 2)
    return r


def curate(*args) -> list[str]:
    return [sys.executable, "-m", "curate", *args]


def db_url(db: str, name: str) -> str | None:
    if db == "sqlite":
        return None
    base = os.environ.get("CURATE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
    # the name does not depend on --work: a second session (another work dir) sets a suffix
    # so that its fresh_workspace does not DROP ... WITH (FORCE) the first one's database
    return base.rsplit("/", 1)[0] + "/" + name + os.environ.get("CURATE_SCALE_DB_SUFFIX", "")


def pg_admin(base_url: str, sql: str) -> None:
    from sqlalchemy import create_engine, text

    eng = create_engine(base_url.rsplit("/", 1)[0] + "/postgres", isolation_level="AUTOCOMMIT")
    with eng.connect() as c:
        c.execute(text(sql))
    eng.dispose()


def fresh_workspace(work: Path, db: str, tag: str) -> tuple[Path, dict]:
    ws = work / f"ws-{tag}-{db}"
    if ws.exists():
        shutil.rmtree(ws)
    env = dict(os.environ, CURATE_NO_PROGRESS="1", PYTHONPATH=str(REPO))
    env.pop("CURATE_DB", None)
    env.pop("CURATE_WORKSPACE", None)
    url = db_url(db, f"scale_bench_{tag}")
    if url:
        pg_admin(url, f"DROP DATABASE IF EXISTS {url.rsplit('/', 1)[1]} WITH (FORCE)")
        pg_admin(url, f"CREATE DATABASE {url.rsplit('/', 1)[1]}")
        env["CURATE_DB"] = url
    subprocess.run(curate("init", str(ws)), env=env, check=True, capture_output=True)
    return ws, env


def drop_workspace(db: str, tag: str) -> None:
    url = db_url(db, f"scale_bench_{tag}")
    if url:
        pg_admin(url, f"DROP DATABASE IF EXISTS {url.rsplit('/', 1)[1]} WITH (FORCE)")


def drop_set(ws: Path, env: dict, set_name: str) -> None:
    """Forget an embedding set (rows, set, shards) so the next embed starts from scratch."""
    code = ("import sys,shutil; from sqlalchemy import text; "
            "from curate.workspace import find_workspace; "
            "ws=find_workspace(sys.argv[1]); ix=ws.open_index(); sid=ix.embedding_set(sys.argv[2]).id\n"
            "with ix.session() as s:\n"
            " s.execute(text('DELETE FROM embedding_rows WHERE set_id = :i'), {'i': sid})\n"
            " s.execute(text('DELETE FROM embedding_sets WHERE id = :i'), {'i': sid})\n"
            "shutil.rmtree(ws.data_dir/'embeddings', ignore_errors=True)")
    subprocess.run([sys.executable, "-c", code, str(ws), set_name], env=env, check=True)


def record(row: dict) -> None:
    print(json.dumps({k: v for k, v in row.items() if k != "stdout"}), flush=True)
    with open(RESULTS, "a") as f:
        f.write(json.dumps({k: v for k, v in row.items() if k != "stdout"}) + "\n")


# ---------------------------------------------------------------- one cell
def ingest_step(n, pool, new, ws, env, log, base) -> None:
    """``curate ingest`` of the pool, then of the new batch: two processes, one record."""
    a = timed(curate("ingest", *pool, "--batch", "pool", "--json"), ws, env, log)
    b = timed(curate("ingest", *new, "--batch", "new", "--json"), ws, env, log)
    assert a["rc"] == 0 and b["rc"] == 0, f"ingest failed; see {log}"
    added = json.loads(a["stdout"])["added"] + json.loads(b["stdout"])["added"]
    assert added == n, f"ingested {added} of {n}"
    secs = a["seconds"] + b["seconds"]
    lib = sum(json.loads(r["stdout"])["seconds"] for r in (a, b))
    record({**base, "step": "ingest", "mode": "local", "images": n, "seconds": round(secs, 3),
            "library_seconds": round(lib, 3),
            "peak_mb": max(a["peak_mb"], b["peak_mb"]), "rc": 0, "processes": 2,
            "images_per_s": round(n / secs, 1)})


def run_cell(work: Path, n: int, db: str, cnn: bool, ray: bool, report: bool) -> None:
    tag = f"{n // 1000}k"
    ws, env = fresh_workspace(work, db, tag)
    log = work / f"log-{tag}-{db}.txt"
    parts = n // PART
    n_new = max(1, parts // 10)
    pool = [str(part_dir(work, k)) for k in range(parts - n_new)]
    new = [str(part_dir(work, k)) for k in range(parts - n_new, parts)]
    base = {"n": n, "db": db, "machine": f"{platform.machine()}, {os.cpu_count()} cores",
            "load_before": round(os.getloadavg()[0], 1)}

    def step(name, *args, images=n, mode="local", **extra):
        r = timed(curate(*args), ws, env, log)
        row = {**base, "step": name, "mode": mode, "images": images, **extra, **r,
               "images_per_s": round(images / r["seconds"], 1) if images else None}
        record(row)
        if r["rc"] != 0:
            raise SystemExit(f"{name} failed (rc {r['rc']}); see {log}")
        return r

    ingest_step(n, pool, new, ws, env, log, base)

    emb = ["embed", "--encoder", "pixels-pca", "--device", "cpu", "--json"]
    if ray:
        r = step("embed pixels-pca", *emb, "--ray", "local", mode="ray local")
        drop_set(ws, env, json.loads(r["stdout"])["embedding_set"])
    r = step("embed pixels-pca", *emb)
    pca = json.loads(r["stdout"])["embedding_set"]
    if cnn:
        t = timed(curate("train", "--method", "simclr", "--name", "cnn", "--backbone", "small-cnn",
                         "--image-size", "28", "--max-steps", "3", "--batch-size", "128",
                         "--workers", "0", "--holdout-fraction", "0", "--no-compare",
                         "--no-progress", "--accelerator", "cpu"), ws, env, log)
        assert t["rc"] == 0, f"train failed; see {log}"
        record({**base, "step": "train small-cnn (3 steps, not in the curve)", "mode": "local",
                "images": None, "seconds": t["seconds"], "peak_mb": t["peak_mb"], "rc": 0})
        step("embed small-cnn", "embed", "--model", "cnn", "--device", "cpu", "--batch-size",
             "256", "--json")
    step("select kcenter", "select", "--budget", "500", "--strategy", "kcenter",
         "--embeddings", pca, "--device", "cpu", "--dry-run", "--json")
    step("select auto", "select", "--budget", "500", "--embeddings", pca, "--device", "cpu",
         "--json")
    step("fit-scorer mahalanobis", "fit-scorer", "--kind", "mahalanobis", "--name", "maha",
         "--embeddings", pca, "--reference-batch", "pool", "--json")
    step("score mahalanobis", "score", "--scorer", "maha", "--top", "5", "--json")
    if ray:
        step("score mahalanobis", "score", "--scorer", "maha", "--top", "5", "--ray", "local",
             "--json", mode="ray local")
    step("check-batch", "check-batch", "--batch", "new", "--scorer", "maha", "--json",
         images=n_new * PART)
    if report:
        step("report", "report", "--out", str(work / f"report-{tag}-{db}.html"))
    drop_workspace(db, tag)


# ---------------------------------------------------------------- 1M synthetic
def mixture(n: int, dim: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((50, dim), dtype=np.float32) * 3
    comp = rng.integers(50, size=n)
    X = rng.standard_normal((n, dim), dtype=np.float32)
    for s in range(0, n, 1 << 16):
        X[s:s + (1 << 16)] += centres[comp[s:s + (1 << 16)]]
    return X


def build_million(ws: Path, env: dict, work: Path, n: int, dim: int) -> dict:
    """Images rows (hard links to real PNGs), written with plain SQL (an executemany per
    50k rows: setup, not a measurement of ingest) + embeddings through curate's store."""
    from sqlalchemy import text

    if env.get("CURATE_DB"):
        os.environ["CURATE_DB"] = env["CURATE_DB"]
    from curate.embeddings import append_shard, relative_set_path, set_folder
    from curate.provenance import utcnow
    from curate.workspace import find_workspace

    t0 = time.perf_counter()
    links = work / "links"
    srcs = sorted(p for k in range(70) for p in part_dir(work, k).glob("*.png"))
    assert srcs, "run `scale.py images --n 70000` first"
    paths = []
    for j in range(n):
        d = links / f"{j // 10000:03d}"
        p = d / f"{j:07d}.png"
        if j % 10000 == 0:
            d.mkdir(parents=True, exist_ok=True)
        if not p.exists():
            os.link(srcs[j % len(srcs)], p)
        paths.append(str(p))
    t_links = time.perf_counter() - t0
    w = find_workspace(ws)
    index = w.open_index()
    t = time.perf_counter()
    bid = {name: index.get_or_create_batch(name) for name in ("pool", "new")}
    n_new, now = n // 10, utcnow()
    add_image = text("INSERT INTO images (path, sha256, bytes, width, height, mode, status, "
                     "batch_id, first_seen) VALUES (:path, :sha256, 300, 28, 28, 'L', 'ok', "
                     ":batch_id, :first_seen)")
    with index.session() as s:
        for lo in range(0, n, 50000):
            s.execute(add_image, [
                {"path": paths[j], "sha256": hashlib.sha256(str(j).encode()).hexdigest(),
                 "batch_id": bid["new" if j >= n - n_new else "pool"], "first_seen": now}
                for j in range(lo, min(n, lo + 50000))])
    t_images = time.perf_counter() - t
    X = mixture(n, dim)
    t = time.perf_counter()
    with index.session() as s:
        ids = np.fromiter(s.scalars(text("SELECT id FROM images ORDER BY id")), np.int64)
    m = index.ensure_model("synthetic", encoder="synthetic", params={"note": "Gaussian mixture"})
    es = index.ensure_embedding_set(f"synthetic@{dim}", model_id=m.id, dim=dim, dtype="float32",
                                    path=relative_set_path(f"synthetic@{dim}"), params={})
    folder = set_folder(w.data_dir, es)
    for lo in range(0, n, 100000):
        append_shard(index, es, ids[lo:lo + 100000], X[lo:lo + 100000], folder)
    t_store = time.perf_counter() - t
    return {"links_s": round(t_links, 1), "image_rows_s": round(t_images, 1),
            "append_shard_s": round(t_store, 1)}


def kernel_times(n: int, dim: int, names=("kcenter", "auto")) -> dict:
    """The select kernels alone on the same array (what `curate select` calls)."""
    from curate.select import SELECTORS

    X = mixture(n, dim)
    out = {}
    for name in names:
        t = time.perf_counter()
        p = SELECTORS.get(name)(X, 500, np.zeros(0, np.int64), np.zeros(0, np.int64),
                                metric="cosine", random_state=0, device="cpu", fp16=False)
        out[name] = {"seconds": round(time.perf_counter() - t, 2),
                     "info": {k: v for k, v in p.info.items() if not isinstance(v, (list, dict))}}
        print(name, out[name], flush=True)
    return out


def run_million(work: Path, db: str, n: int, dim: int, steps: list[str]) -> None:
    tag = f"{n // 1000}k"
    ws, env = fresh_workspace(work, db, tag)
    log = work / f"log-{tag}-{db}.txt"
    base = {"n": n, "db": db, "machine": f"{platform.machine()}, {os.cpu_count()} cores",
            "synthetic_embeddings": f"{n} x {dim} float32 Gaussian mixture via append_shard"}
    setup = build_million(ws, env, work, n, dim)
    record({**base, "step": "setup (not in the curve)", "mode": "local", **setup})
    es = f"synthetic@{dim}"

    def step(name, *args, images=n):
        r = timed(curate(*args), ws, env, log)
        record({**base, "step": name, "mode": "local", "images": images, **r,
                "images_per_s": round(images / r["seconds"], 1)})
        if r["rc"] != 0:
            raise SystemExit(f"{name} failed; see {log}")

    if "select" in steps:
        step("select kcenter", "select", "--budget", "500", "--strategy", "kcenter",
             "--embeddings", es, "--device", "cpu", "--dry-run", "--json")
        step("select auto", "select", "--budget", "500", "--embeddings", es, "--device", "cpu",
             "--json")
    if "score" in steps:
        step("fit-scorer mahalanobis", "fit-scorer", "--kind", "mahalanobis", "--name", "maha",
             "--embeddings", es, "--reference-batch", "pool", "--json")
        step("score mahalanobis", "score", "--scorer", "maha", "--top", "5", "--json")
        step("check-batch", "check-batch", "--batch", "new", "--scorer", "maha", "--json",
             images=n // 10)
    if "report" in steps:
        step("report", "report", "--out", str(work / f"report-{tag}-{db}.html"))
    if "kernel" in steps:
        k = kernel_times(n, dim)
        for name, v in k.items():
            record({**base, "step": f"select {name} kernel alone (in-process)", "mode": "local",
                    "images": n, "seconds": v["seconds"], "info": v["info"], "rc": 0,
                    "images_per_s": round(n / v["seconds"], 1)})
    drop_workspace(db, tag)


# ---------------------------------------------------------------- ingest bound
def decode_hash_bound(work: Path, n: int) -> dict:
    """Pillow full decode + sha256 of the same files, one read each, same thread count as
    ingest's pool (4 threads): the floor ingest could reach without a database.
    ``benchmarks/ingest_bound.py`` compares ingest with it in one process."""
    from concurrent.futures import ThreadPoolExecutor

    from PIL import Image

    files = [p for k in range(n // PART) for p in sorted(part_dir(work, k).glob("*.png"))]

    def one(p):
        b = Path(p).read_bytes()
        h = hashlib.sha256(b).hexdigest()
        import io
        with Image.open(io.BytesIO(b)) as im:
            im.load()
        return h

    out = {}
    for threads in (1, 4):
        t = time.perf_counter()
        if threads == 1:
            for p in files:
                one(p)
        else:   # a task per 256 files, as ingest hands out slices (map's chunksize is
            # ignored by thread pools: a future per file would inflate the floor)
            with ThreadPoolExecutor(threads) as ex:
                list(ex.map(lambda sl: [one(p) for p in sl],
                            [files[i:i + 256] for i in range(0, len(files), 256)]))
        out[f"threads_{threads}"] = round(time.perf_counter() - t, 2)
    return {"n": len(files), **out}


# ---------------------------------------------------------------- summary
CURVE_STEPS = ["ingest", "embed pixels-pca", "embed small-cnn", "select kcenter", "select auto",
               "fit-scorer mahalanobis", "score mahalanobis", "check-batch", "report"]


def exponent(ns, secs) -> float | None:
    """Least-squares slope of log(seconds) on log(N); None with fewer than 2 sizes."""
    if len(set(ns)) < 2:
        return None
    return round(float(np.polyfit(np.log(ns), np.log(secs), 1)[0]), 2)


def summarise(runs: Path, out: Path, png: Path) -> dict:
    rows = [json.loads(line) for line in runs.read_text().splitlines() if line.strip()]
    latest: dict[tuple, dict] = {}
    extra = []
    for r in rows:
        if "n" in r and r.get("step") in CURVE_STEPS or "kernel" in r.get("step", ""):
            latest[(r["step"], r["mode"], r["db"], r["n"],       # a rerun replaces; a
                    "synthetic_embeddings" in r)] = r                # synthetic 1M is another cell
        else:
            extra.append(r)
    cells = sorted(latest.values(), key=lambda r: (r["step"], r["mode"], r["db"], r["n"]))
    fits = []
    for key in sorted({(r["step"], r["mode"], r["db"]) for r in cells}):
        sub = [r for r in cells if (r["step"], r["mode"], r["db"]) == key
               and "synthetic_embeddings" not in r]   # 1M: other data, other dim; not fitted
        if not sub:
            continue
        ns, secs = [r["n"] for r in sub], [r["seconds"] for r in sub]
        fits.append({"step": key[0], "mode": key[1], "db": key[2], "sizes": ns,
                     "exponent": exponent(ns, secs),
                     "exponent_without_import": exponent(
                         ns, [max(0.01, r["seconds"] - IMPORT_S.get(key[0], 0)) for r in sub]),
                     "peak_mb": [r.get("peak_mb") for r in sub]})
    doc = {"benchmark": "scale", "machine": f"{platform.machine()}, {os.cpu_count()} cores "
           "(shared with other jobs; each row's load_before is the 1-min load average at its start)",
           "cells": cells, "fits": fits, "other": extra,
           "all_runs": rows}   # every measurement, earlier (more loaded) passes included
    out.write_text(json.dumps(doc, indent=1))
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(13, 5))
    for ax, db in zip(axes, ("sqlite", "postgres")):
        for k, step in enumerate(CURVE_STEPS):
            for mode, ls in (("local", "-"), ("ray local", ":")):
                sub = [r for r in cells if r["step"] == step and r["mode"] == mode and r["db"] == db]
                if sub:
                    ax.loglog([r["n"] for r in sub], [r["seconds"] for r in sub], ls, marker="o",
                              color=f"C{k}", label=f"{step}" + (" (ray)" if mode != "local" else ""))
        for sub, lab in (([r for r in cells if "kernel" in r["step"] and r["db"] == db and
                           r["step"].startswith("select kcenter")], "kcenter kernel alone"),):
            if sub:
                ax.loglog([r["n"] for r in sub], [r["seconds"] for r in sub], "k*", label=lab)
        ns = np.array([1e4, 1e6])
        ax.loglog(ns, 5 * ns / 1e4, "k--", lw=0.7, label="slope 1")
        ax.set_title(f"curate CLI end to end, {db}")
        ax.set_xlabel("images N")
        ax.set_ylabel("seconds (one process per step, imports included)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    print(markdown(doc))
    return doc


def markdown(doc: dict) -> str:
    """The README table: seconds (images/s) per size (real images; the synthetic 1M x 128
    as a column of its own), peak MB, the fitted exponent and the 50k -> 200k and
    200k -> 1M slopes (log-log, two points: where start-up no longer dominates)."""
    cells, fits = doc["cells"], {(f["step"], f["mode"], f["db"]): f for f in doc["fits"]}
    cols = [(n, False) for n in sorted({c["n"] for c in cells if "synthetic_embeddings" not in c})]
    cols += [(10**6, True)]
    head = ("| step | db | " + " | ".join(f"{n // 1000}k" if n < 10**6 else f"{n // 10**6}M"
                                          for n, _ in cols[:-1])
            + " | 1M synthetic 128-d | peak MB | exponent | 50k->200k | 200k->1M |")
    out = [head, "|" + "---|" * (len(cols) + 6)]
    order = CURVE_STEPS + ["select kcenter kernel alone (in-process)",
                           "select auto kernel alone (in-process)"]
    for step in order:
        for mode in ("local", "ray local"):
            for db in ("postgres", "sqlite"):
                sub = {(c["n"], "synthetic_embeddings" in c): c for c in cells
                       if (c["step"], c["mode"], c["db"]) == (step, mode, db)}
                if not sub:
                    continue
                vals = []
                for key in cols:
                    c = sub.get(key)
                    vals.append("-" if c is None else
                                f"{c['seconds']:.1f} ({c['images_per_s']:,.0f}/s)"
                                if c.get("images_per_s") else f"{c['seconds']:.1f}")
                f = fits.get((step, mode, db), {})
                peaks = [c.get("peak_mb") for c in sub.values() if c.get("peak_mb")]
                slopes = []
                for lo, hi in ((50_000, 200_000), (200_000, 10**6)):
                    a, b = sub.get((lo, False)), sub.get((hi, False))
                    slopes.append("-" if not (a and b) else
                                  f"{exponent([lo, hi], [a['seconds'], b['seconds']]):.2f}")
                name = step + (" (Ray local)" if mode != "local" else "")
                out.append(f"| {name} | {db} | " + " | ".join(vals) + " | "
                           f"{'-'.join(str(p) for p in (min(peaks), max(peaks))) if peaks else '-'} | "
                           f"{f.get('exponent') if f.get('exponent') is not None else '-'} | "
                           + " | ".join(slopes) + " |")
    return "\n".join(out)


IMPORT_S: dict[str, float] = {}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=["images", "run", "million", "bound", "imports", "summarise",
                                    "ingest"])
    ap.add_argument("--n", type=int, default=None,
                    help="images (default 10000; 1000000 for `million`)")
    ap.add_argument("--db", default="sqlite", choices=["sqlite", "postgres"])
    ap.add_argument("--work", type=Path, default=DEFAULT_WORK)
    ap.add_argument("--no-cnn", action="store_true")
    ap.add_argument("--no-ray", action="store_true")
    ap.add_argument("--no-report", action="store_true")
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--steps", default="select,score,report,kernel")
    a = ap.parse_args(argv)
    if a.n is None:
        a.n = 1_000_000 if a.what == "million" else 10000
    a.work.mkdir(parents=True, exist_ok=True)
    if a.what == "images":
        print(json.dumps({"images": a.n, "seconds": round(make_images(a.work, a.n), 1)}))
    elif a.what == "run":
        run_cell(a.work, a.n, a.db, not a.no_cnn, not a.no_ray, not a.no_report)
    elif a.what == "million":
        run_million(a.work, a.db, a.n, a.dim, a.steps.split(","))
    elif a.what == "bound":
        record({"step": "decode+sha256 bound", **decode_hash_bound(a.work, a.n)})
    elif a.what == "ingest":   # ingest alone (a rerun after a change to ingest)
        tag = f"{a.n // 1000}k_ingest"
        ws, env = fresh_workspace(a.work, a.db, tag)
        parts = a.n // PART
        n_new = max(1, parts // 10)
        ingest_step(a.n, [str(part_dir(a.work, k)) for k in range(parts - n_new)],
                    [str(part_dir(a.work, k)) for k in range(parts - n_new, parts)], ws, env,
                    a.work / f"log-{tag}-{a.db}.txt",
                    {"n": a.n, "db": a.db, "load_before": round(os.getloadavg()[0], 1),
                     "machine": f"{platform.machine()}, {os.cpu_count()} cores"})
        drop_workspace(a.db, tag)
    elif a.what == "summarise":
        imp = [json.loads(x) for x in RESULTS.read_text().splitlines() if '"imports"' in x]
        if imp:
            IMPORT_S.update({s: imp[-1]["cli_help"] for s in CURVE_STEPS})
        summarise(RESULTS, ROOT / "results" / "scale.json", ROOT / "results" / "scale.png")
    elif a.what == "imports":
        env = dict(os.environ, PYTHONPATH=str(REPO))
        record({"step": "imports", **import_times(env, a.work)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
