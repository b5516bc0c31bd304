"""Local vs Ray embedding on the same Fashion-MNIST PNGs: wall time and equality.

For each index (PostgreSQL from CURATE_TEST_POSTGRES_URL, in fresh schemas, and SQLite) and
each encoder (pixels-pca; torchvision resnet18 at 32 px with random weights from seed 0),
embeds ``--n`` Fashion-MNIST training images (written as PNGs) once locally and once with
``ray="local"`` (a Ray instance started for the run, one actor per CPU), and checks that
both give the same ids and vectors. Wall time includes the PCA fit and, for Ray, starting
Ray and its actors.

    CURATE_TEST_POSTGRES_URL=postgresql+psycopg://postgres@127.0.0.1:5432/test \\
        python benchmarks/embed_ray.py --n 10000 --work /tmp/embed_ray

Writes ``benchmarks/results/embed_ray.json`` (``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "embed_ray.json"


def main(argv=None):
    import torch
    import torchvision
    from sqlalchemy import create_engine, text

    from curate.datasets import load_fashion_mnist, write_pngs
    from curate.embed import embed
    from curate.embeddings import load_embeddings
    from curate.ingest import ingest
    from curate.workspace import init_workspace

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=10_000)
    p.add_argument("--work", type=Path, default=Path("/tmp/embed_ray"))
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    a = p.parse_args(argv)
    imgs = a.work / f"fmnist{a.n}"
    if not imgs.exists():
        X, y = load_fashion_mnist("train")
        write_pngs(X[:a.n], y[:a.n], imgs)
    pg = os.environ["CURATE_TEST_POSTGRES_URL"]
    admin = create_engine(pg)
    torch.manual_seed(0)
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), a.work / "r18.pth")
    encoders = [("pixels-pca", {}), ("resnet18", {"weights": str(a.work / "r18.pth"), "image_size": 32})]
    rows, equal = [], []
    for db in ["postgres", "sqlite"]:
        out = {}
        for mode in ["local", "ray"]:
            name = f"{db}_{mode}"
            url = None
            if db == "postgres":
                with admin.begin() as c:
                    c.execute(text(f'DROP SCHEMA IF EXISTS "b_{name}" CASCADE'))
                    c.execute(text(f'CREATE SCHEMA "b_{name}"'))
                url = f"{pg}?options=-csearch_path%3Db_{name}"
            ws = init_workspace(a.work / name, db=url)
            idx = ws.open_index()
            ingest(idx, [str(imgs)])
            for enc, kw in encoders:
                t = time.perf_counter()
                rep = embed(idx, ws, encoder=enc, ray=None if mode == "local" else "local", **kw)
                wall = time.perf_counter() - t
                out[(mode, enc)] = load_embeddings(idx, rep.embedding_set)
                r = {"db": db, "mode": mode, "encoder": enc, "images": rep.embedded,
                     "wall_s": round(wall, 1), "embed_loop_s": round(rep.seconds, 1),
                     "images_per_s_wall": round(rep.embedded / wall), "device": rep.device,
                     "load": os.getloadavg()[0]}
                print(json.dumps(r), flush=True)
                rows.append(r)
            idx.close()
        for enc, _ in encoders:
            (i0, z0), (i1, z1) = out[("local", enc)], out[("ray", enc)]
            e = {"db": db, "encoder": enc, "same_ids": bool(np.array_equal(i0, i1)),
                 "max_abs_diff": float(np.abs(z0 - z1).max())}
            print(json.dumps(e), flush=True)
            equal.append(e)
    res = {"n": a.n, "cpu_count": os.cpu_count(), "runs": rows, "equality": equal}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(res, indent=2) + "\n")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
