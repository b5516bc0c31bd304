"""`curate report` on a 50k-image index: render time and page size (target: < 30 s, < ~20 MB).

Usage: python benchmarks/report_scale.py [--n 50000] [--work /tmp/curate-report-scale]
       [--out benchmarks/results/report_scale.json]

Builds (or reuses, when ``--work`` already holds it) a workspace as a data team would
have it after a round: ``n - 1000`` Fashion-MNIST training images and 1,000 MNIST digits
(a shifted batch), written as PNGs in batches ``week-1`` ... ``week-5`` (+ ``mnist``),
``week-1`` ingested with its folder labels, all embedded with ``pixels-pca``,
``curate select --budget 500`` (default strategy), a ``knn`` scorer fitted on ``week-1``
and stored scores for every image, ``check-batch`` of ``week-5`` and ``mnist``. Then it
renders the report three ways: in-process (imports done: the library cost), again
(repeatability), and as the CLI a user runs (a fresh process: imports included).

Baseline for the page size: embedding a thumbnail of every image instead of the capped
set (``n`` x the mean size of the thumbnails actually shown), the naive way to make
"one self-contained file".
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent


def build(work: Path, n: int) -> dict:
    """The workspace under ``work`` (reused when complete); returns setup timings."""
    from curate.novelty.batch_check import check_batch
    from curate.datasets import load_fashion_mnist, load_mnist, write_pngs
    from curate.embed import embed
    from curate.ingest import ingest
    from curate.novelty.stored import fit_scorer
    from curate.novelty.scoring import score_images
    from curate.select.selection import select_images
    from curate.workspace import find_workspace, init_workspace

    done = work / "ws" / "BUILT"
    if done.exists():
        return json.loads(done.read_text())
    t: dict[str, float] = {}
    n_fm = n - 1000
    X, y = load_fashion_mnist("train")
    Xm, ym = load_mnist("test")
    names = ["tshirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker",
             "bag", "boot"]
    s = time.perf_counter()
    per = n_fm // 5
    for w in range(5):
        lo, hi = w * per, (n_fm if w == 4 else (w + 1) * per)
        write_pngs(X[lo:hi], y[lo:hi], work / "img" / f"week-{w + 1}", class_names=names)
    write_pngs(Xm[:1000], ym[:1000], work / "img" / "mnist")
    t["write_pngs"] = time.perf_counter() - s
    ws = init_workspace(work / "ws") if not (work / "ws" / "curate.toml").exists() \
        else find_workspace(work / "ws")
    index = ws.open_index()
    try:
        s = time.perf_counter()
        for w in range(5):
            ingest(index, [work / "img" / f"week-{w + 1}"], batch=f"week-{w + 1}",
                   labels="folders" if w == 0 else None)
        ingest(index, [work / "img" / "mnist"], batch="mnist")
        t["ingest"] = time.perf_counter() - s
        s = time.perf_counter()
        rep = embed(index, ws, encoder="pixels-pca", device="cpu", batch_size=512)
        t["embed"] = time.perf_counter() - s
        s = time.perf_counter()
        sel = select_images(index, 500, embeddings=rep.embedding_set, device="cpu")
        t["select"] = time.perf_counter() - s
        s = time.perf_counter()
        fit = fit_scorer(index, ws, "knn", k=10, reference_batches=["week-1"], alpha=0.05)
        score_images(index, fit.name)
        t["fit_and_score"] = time.perf_counter() - s
        s = time.perf_counter()
        verdicts = {b: check_batch(index, b, fit.name, permutations=200, max_ref=5000).verdict
                    for b in ("week-5", "mnist")}
        t["check_batch"] = time.perf_counter() - s
    finally:
        index.close()
    info = {"setup_seconds": {k: round(v, 1) for k, v in t.items()}, "verdicts": verdicts,
            "selection_strategy": sel.strategy, "scorer": fit.name}
    done.write_text(json.dumps(info))
    return info


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=50_000)
    ap.add_argument("--work", type=Path, default=Path("/tmp/curate-report-scale"))
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "report_scale.json")
    a = ap.parse_args(argv)
    a.work.mkdir(parents=True, exist_ok=True)
    setup = build(a.work, a.n)

    from curate.report import MAX_PICKS_SHOWN, N_NOVEL, N_TYPICAL, build_report
    from curate.workspace import find_workspace

    ws = find_workspace(a.work / "ws")
    runs = []
    for i in range(2):
        index = ws.open_index()
        try:
            t = time.perf_counter()
            res = build_report(index, ws, out=a.work / f"report-{i}.html")
            runs.append(time.perf_counter() - t)
        finally:
            index.close()
    page = Path(res.path).read_text()
    thumbs = re.findall(r'src="data:image/jpeg;base64,([^"]+)"', page)
    thumb_bytes = [len(s) * 3 // 4 for s in thumbs]
    cli = a.work / "report-cli.html"
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "curate", "-w", str(a.work / "ws"), "report",
                           "--out", str(cli)], capture_output=True, text=True)
    cli_s = time.perf_counter() - t
    if proc.returncode != 0:
        print(proc.stderr, file=sys.stderr)
        return 1
    mean_thumb = float(np.mean(thumb_bytes)) if thumb_bytes else 0.0
    out = {
        "n_images": a.n, "render_seconds_in_process": [round(x, 2) for x in runs],
        "render_seconds_cli": round(cli_s, 2), "html_mb": round(res.bytes / 1e6, 2),
        "html_mb_cli": round(cli.stat().st_size / 1e6, 2),
        "images_shown": res.images_shown, "images_read": res.images_read, "figures": res.figures,
        "thumbnail_cap": {"picks": MAX_PICKS_SHOWN, "most_novel": N_NOVEL, "typical": N_TYPICAL,
                          "px": 96},
        "mean_thumbnail_bytes": round(mean_thumb),
        "thumbnails_mb_in_page": round(sum(len(s) for s in thumbs) / 1e6, 2),
        "baseline_every_thumbnail_mb": round(a.n * mean_thumb * 4 / 3 / 1e6, 1),
        "sections": res.sections, "setup": setup,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "load_avg_1m": round(os.getloadavg()[0], 1)},
    }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(out, indent=1) + "\n")
    print(f"{a.n} images: render {out['render_seconds_in_process']} s in process, "
          f"{cli_s:.1f} s as `curate report` (imports included); page {out['html_mb']} MB with "
          f"{res.images_shown} thumbnails ({out['thumbnails_mb_in_page']} MB) and {res.figures} "
          f"figures; every thumbnail embedded would be ~{out['baseline_every_thumbnail_mb']} MB")
    print(f"written: {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
