"""Training throughput on CPU: SimCLR, small-cnn, batch 256, grayscale, 28 and 64 px.

Usage: python benchmarks/train_throughput.py [--images 3000] [--sizes 28,64] [--windows 5]
       [--window-steps 4] [--no-bf16] [--quick] [--out FILE]

Both pipelines train through the same code as ``curate train`` (index -> ImageDataModule
-> :func:`curate.trainers.fit.fit_run`) on Fashion-MNIST training images written as PNG
files and ingested into a fresh workspace (64 px: the same images resized, bilinear):

* ``before`` -- the first release's path: every image decoded from its PNG every epoch
  and augmented one image at a time in a DataLoader worker (``ImageDataModule(...,
  batched=False)``: the ``per-image`` pipeline, default workers), NCHW weights, glibc's
  default allocator, torch's default threads, OpenMP's default (spinning) waits;
* ``after`` -- the defaults now: images decoded once into the workspace cache
  (``batched-cache``), views made per batch (``curate.trainers.batch_augment``), and the
  CPU knobs of ``curate.trainers.cpu`` (channels-last, freed buffers kept,
  ``OMP_WAIT_POLICY=PASSIVE`` as the CLI sets it);
* ``after+bf16`` (28 px, opt-in, not a default: changes the arithmetic) -- ``after``
  with ``--precision bf16-mixed``.

Each configuration runs in its own process, one after another (the machine may be
shared: the load average is recorded). images/s = 256 / the median step time of
``--windows`` windows of ``--window-steps`` steps, after 3 untimed steps; the spread
is the min/max window. CPU s/step = CPU time of the training process (all its threads)
per step in the windows, plus, for ``before``, its loader worker's CPU time per step
over the whole fit: what a step costs independent of how the machine is shared.

Profile (``profile``): one batch of 256 through each stage, medians of 5 repeats in the
``before`` and ``after`` settings, wall and CPU seconds: decode (PNG -> PIL), base
(resize/centre crop to a uint8 tensor), per-image augmentation (2 views), collate;
the one-time cache build (all images), cache read + batched augmentation (2 views); forward, backward, optimizer (AdamW) of the
SimCLR step on 2 x 256 views (timed inside the same steps).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
BATCH = 256


# ---------------------------------------------------------------- data
def make_workspace(folder: Path, n: int, size: int) -> Path:
    """PNG files of the first n Fashion-MNIST training images at ``size`` px, ingested."""
    import numpy as np
    from PIL import Image

    from curate.datasets import load_fashion_mnist
    from curate.ingest import ingest
    from curate.workspace import init_workspace

    X, y = load_fashion_mnist("train")
    imgs = folder / "imgs"
    for i in range(n):
        im = Image.fromarray(np.ascontiguousarray(X[i]))
        if size != im.width:
            im = im.resize((size, size), Image.BILINEAR)
        p = imgs / str(int(y[i])) / f"{i:05d}.png"
        p.parent.mkdir(parents=True, exist_ok=True)
        im.save(p)
    ws = init_workspace(folder / "ws")
    index = ws.open_index()
    ingest(index, [str(imgs)], batch="fm")
    index.close()
    return folder / "ws"


def _env(after: bool) -> dict:
    env = dict(os.environ)
    env.pop("OMP_WAIT_POLICY", None)
    if after:
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    return env


def _child(args: list[str], after: bool) -> dict:
    """Run this script in a worker process; its last stdout line is JSON."""
    out = subprocess.run([sys.executable, __file__, *args], env=_env(after), text=True,
                         capture_output=True)
    if out.returncode != 0:
        raise RuntimeError(f"worker {args} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------- workers
def _setup(ws_dir: str, size: int, after: bool):
    import warnings

    from curate.trainers import TRAINERS
    from curate.trainers.datamodule import ImageDataModule
    from curate.trainers.run import load_methods, quiet_lightning
    from curate.workspace import find_workspace

    load_methods()
    quiet_lightning()
    warnings.filterwarnings("ignore")
    ws = find_workspace(ws_dir)
    index = ws.open_index()
    module = TRAINERS.get("simclr")(backbone="small-cnn", image_size=size, channels=1,
                                    batch_size=BATCH)
    module.cpu_tuning = after
    dm = ImageDataModule.from_index(index, module.train_views(), size, 1, batch="fm",
                                    batch_size=BATCH, batched=after,
                                    cache_dir=Path(ws.data_dir) / "cache" if after else None)
    return ws, index, module, dm


def worker_throughput(ws_dir: str, size: int, after: bool, precision: str, windows: int,
                      window_steps: int) -> dict:
    import torch
    from lightning.pytorch.callbacks import Callback

    from curate.trainers.config import RuntimeConfig, TrainConfig
    from curate.trainers.fit import fit_run

    class Clock(Callback):
        def __init__(self):
            self.wall, self.cpu = [], []

        def on_train_batch_end(self, *a):
            self.wall.append(time.perf_counter())
            self.cpu.append(time.process_time())

    ws, index, module, dm = _setup(ws_dir, size, after)
    t = time.perf_counter()
    if after:
        dm.prepare_data()  # the cache exists (the profile built it): its freshness check
    check_s = time.perf_counter() - t
    clock, warm = Clock(), 3
    steps = warm + windows * window_steps
    load0 = os.getloadavg()[0]
    run = fit_run(index, ws, module, dm,
                  TrainConfig(method="simclr", max_steps=steps, epochs=1000, precision=precision),
                  RuntimeConfig(devices=1, accelerator="cpu", progress=False, checkpoint_every=0),
                  params={"benchmark": True}, callbacks=[clock])
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    w, c = clock.wall[warm - 1:], clock.cpu[warm - 1:]
    per_window = [(w[(k + 1) * window_steps] - w[k * window_steps]) / window_steps
                  for k in range(windows)]
    main_cpu = (c[-1] - c[0]) / (len(c) - 1)
    child_cpu = (children.ru_utime + children.ru_stime) / max(1, run.data["steps"])
    index.close()
    return {"pipeline": run.data.get("pipeline"), "precision": precision,
            "threads": torch.get_num_threads(), "workers": dm.num_workers if not after else 0,
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "default (active)"),
            "images_per_s": round(BATCH / statistics.median(per_window), 1),
            "images_per_s_windows": [round(BATCH / s, 1) for s in per_window],
            "step_s_median": round(statistics.median(per_window), 4),
            "cpu_s_per_step": round(main_cpu + child_cpu, 4),
            "cpu_s_per_step_main": round(main_cpu, 4),
            "cpu_s_per_step_loader_workers": round(child_cpu, 4),
            "cache_check_s": round(check_s, 3) if after else None,
            "steps": run.data["steps"], "loadavg_1min": [round(load0, 2), round(os.getloadavg()[0], 2)]}


def worker_profile(ws_dir: str, size: int, after: bool, reps: int = 5) -> dict:
    import torch

    from curate.trainers.cache import CachedDataset
    from curate.trainers.datamodule import RecordSource, collate_views

    ws, index, module, dm = _setup(ws_dir, size, after)
    src: RecordSource = dm.source
    out: dict[str, dict] = {}

    def timed(name, fn):
        walls, cpus = [], []
        for _ in range(reps):
            w, c = time.perf_counter(), time.process_time()
            r = fn()
            walls.append(time.perf_counter() - w)
            cpus.append(time.process_time() - c)
        out[name] = {"wall_s": round(statistics.median(walls), 5),
                     "cpu_s": round(statistics.median(cpus), 5)}
        return r

    idx = list(range(BATCH))
    if after:
        t = time.perf_counter()
        dm.prepare_data()  # decode every image once into the cache
        out["cache_build_all_images"] = {"wall_s": round(time.perf_counter() - t, 3)}
        ds = CachedDataset(dm._base_images(), dm.labels)
        x = timed("cache_read", lambda: ds.__getitems__(idx)[0])
        views = timed("batched_augment_2_views", lambda: dm.batch_views(x))
        views = [v.contiguous(memory_format=torch.channels_last) for v in views]
    else:
        views_fn = dm.view_fn
        pils = timed("decode_png", lambda: [src.load(i) for i in idx])
        bases = timed("base_transform", lambda: [views_fn.base(im) for im in pils])
        items = timed("per_image_augment_2_views",
                      lambda: [(list(views_fn.multi(b)), 0) for b in bases])
        views = timed("collate", lambda: collate_views(items))[0]
    if after:
        module.to(memory_format=torch.channels_last)
        from curate.trainers.cpu import keep_freed_memory

        keep_freed_memory(True)
    opt = torch.optim.AdamW(module.parameters(), lr=1e-3)
    x0, x1 = views[0], views[1]
    clocks = {"forward": [], "backward": [], "optimizer_step": []}

    def step(record: bool):
        marks = [(time.perf_counter(), time.process_time())]
        z = module(torch.cat([x0, x1]))
        loss = module.criterion(*z.chunk(2))
        marks.append((time.perf_counter(), time.process_time()))
        opt.zero_grad()
        loss.backward()
        marks.append((time.perf_counter(), time.process_time()))
        opt.step()
        marks.append((time.perf_counter(), time.process_time()))
        if record:
            for name, a, b in zip(clocks, marks, marks[1:]):
                clocks[name].append((b[0] - a[0], b[1] - a[1]))

    for k in range(2 + reps):  # 2 warm-up steps (allocator, oneDNN kernels)
        step(k >= 2)
    for name, ts in clocks.items():
        out[name] = {"wall_s": round(statistics.median(t[0] for t in ts), 4),
                     "cpu_s": round(statistics.median(t[1] for t in ts), 4)}
    index.close()
    return {"threads": torch.get_num_threads(), "stages": out,
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "default (active)")}


# ---------------------------------------------------------------- main
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=3000)
    ap.add_argument("--sizes", default="28,64")
    ap.add_argument("--windows", type=int, default=5)
    ap.add_argument("--window-steps", type=int, default=4)
    ap.add_argument("--no-bf16", action="store_true")
    ap.add_argument("--quick", action="store_true", help="600 images, 28 px, 2 windows of 2 steps")
    ap.add_argument("--out", default=str(ROOT / "results" / "train_throughput.json"))
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        job = json.loads(a.worker)
        fn = worker_profile if job.pop("kind") == "profile" else worker_throughput
        print(json.dumps(fn(**job)))
        return
    from curate.provenance import utcnow, versions

    if a.quick:
        a.images, a.sizes, a.windows, a.window_steps = 600, "28", 2, 2
    sizes = [int(s) for s in a.sizes.split(",")]
    t_all = time.time()
    result: dict = {"params": {"images": a.images, "batch": BATCH, "method": "simclr",
                               "backbone": "small-cnn", "channels": 1, "windows": a.windows,
                               "window_steps": a.window_steps, "quick": a.quick},
                    "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
                    "versions": versions(), "started": utcnow().isoformat(timespec="seconds"),
                    "sizes": {}}
    with tempfile.TemporaryDirectory(prefix="curate-throughput-") as tmp:
        for size in sizes:
            t = time.time()
            ws_dir = str(make_workspace(Path(tmp) / f"s{size}", a.images, size))
            print(f"{size} px: workspace with {a.images} images in {time.time() - t:.0f}s", flush=True)
            row: dict = {"profile": {}, "throughput": {}}
            for name, after in (("before", False), ("after", True)):
                row["profile"][name] = _child(["--worker", json.dumps(
                    {"kind": "profile", "ws_dir": ws_dir, "size": size, "after": after})], after)
                print(f"  profile {name}: {json.dumps(row['profile'][name]['stages'])}", flush=True)
            configs = [("before", False, "32-true"), ("after", True, "32-true")]
            if size == 28 and not a.no_bf16:
                configs.append(("after+bf16 (opt-in)", True, "bf16-mixed"))
            for name, after, precision in configs:
                r = _child(["--worker", json.dumps(
                    {"kind": "throughput", "ws_dir": ws_dir, "size": size, "after": after,
                     "precision": precision, "windows": a.windows,
                     "window_steps": a.window_steps})], after)
                row["throughput"][name] = r
                print(f"  {name}: {r['images_per_s']} images/s (windows {r['images_per_s_windows']}), "
                      f"{r['cpu_s_per_step']} CPU s/step, load {r['loadavg_1min']}", flush=True)
            tp = row["throughput"]
            row["speedup_images_per_s"] = round(tp["after"]["images_per_s"] / tp["before"]["images_per_s"], 2)
            row["speedup_cpu_s_per_step"] = round(tp["before"]["cpu_s_per_step"] / tp["after"]["cpu_s_per_step"], 2)
            row["target_3x_met"] = row["speedup_images_per_s"] >= 3.0
            result["sizes"][str(size)] = row
            print(f"  speed-up: {row['speedup_images_per_s']}x images/s, "
                  f"{row['speedup_cpu_s_per_step']}x CPU per step", flush=True)
    result["seconds"] = round(time.time() - t_all, 1)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
