"""``curate demo``: the main job end to end with no data and no server.

Writes sklearn's 8x8 digits (1,797 images, upscaled to 32x32 PNGs) into a fresh
workspace, ingests them, trains or fits an encoder, embeds, selects 50 with the default
strategy (README "Which strategy?") and reports how many digit classes the picks cover
versus random.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from curate.datasets import load_digits, write_pngs
from curate.embed import embed
from curate.ingest import ingest
from curate.select.selection import select_images
from curate.workspace import init_workspace


@dataclass
class DemoReport:
    workspace: Path
    images: Path
    encoder: str
    embedding_set: str
    selection_id: int
    strategy: str
    picks: object  # DataFrame
    classes_covered: int
    random_classes_covered: float
    seconds: dict = field(default_factory=dict)


def fresh_dir(base: Path) -> Path:
    """``base`` if unused, else ``base-2``, ``base-3``, ..."""
    if not base.exists() or not any(base.iterdir()):
        return base
    n = 2
    while Path(f"{base}-{n}").exists():
        n += 1
    return Path(f"{base}-{n}")


#: ``progress(stage, done, total, info="", eta=None)``: stage is ingest, train or embed;
#: train reports optimizer steps, ``info`` (epoch, loss, images/s) and ``eta`` (seconds)
Progress = Callable[..., None]


def _quick_encoder(index, ws, seconds: float, progress: Progress | None = None,
                   verbose: bool = False) -> tuple[str | None, str | None]:
    """(model, encoder): a quick SSL model when the trainers provide one, else pixels-pca."""
    try:
        from curate.trainers.run import quick_demo_train
    except ImportError:
        return None, "pixels-pca"
    report = None
    if progress is not None:
        def report(p) -> None:
            progress("train", p.step, p.total_steps, p.describe(), p.eta_s)
    return quick_demo_train(index, ws, seconds=seconds, on_progress=report, verbose=verbose), None


def _stage(progress: Progress | None, name: str):
    return None if progress is None else (lambda done, total: progress(name, done, total))


def run_demo(root: Path | str | None = None, budget: int = 50, seed: int = 0,
             train: bool = True, train_seconds: float = 15.0, verbose: bool = False,
             progress: Progress | None = None) -> DemoReport:
    """Run the demo in ``root`` (default: a fresh ``./curate-demo``; see module docstring).

    ``progress`` receives each stage's progress (see :data:`Progress`); Lightning's
    banners and tips are silenced unless ``verbose``.
    """
    t = {"start": time.perf_counter()}
    root = Path(root) if root else fresh_dir(Path.cwd() / "curate-demo")
    ws = init_workspace(root)
    index = ws.open_index()
    try:
        images, labels = load_digits()
        img_dir = root / "digits"
        if not img_dir.exists():
            write_pngs(images, labels, img_dir, upscale=4)
        t["write"] = time.perf_counter()
        ingest(index, [img_dir], batch="digits", progress=_stage(progress, "ingest"))
        t["ingest"] = time.perf_counter()
        model, encoder = (_quick_encoder(index, ws, train_seconds, progress, verbose) if train
                          else (None, "pixels-pca"))
        t["train"] = time.perf_counter()
        rep = embed(index, ws, encoder=encoder, model=model, device="cpu",
                    progress=_stage(progress, "embed"))
        t["embed"] = time.perf_counter()
        res = select_images(index, budget, embeddings=rep.embedding_set, seed=seed)
        t["select"] = time.perf_counter()
    finally:
        index.close()
    classes = res.picks["path"].map(lambda p: Path(p).parent.name)
    rng = np.random.default_rng(seed)
    rand_cov = float(np.mean([len(set(rng.choice(labels, budget, replace=False))) for _ in range(200)]))
    keys = list(t)
    secs = {k: round(t[k] - t[prev], 2) for prev, k in zip(keys, keys[1:])}
    secs["total"] = round(t[keys[-1]] - t["start"], 2)
    return DemoReport(workspace=root.resolve(), images=img_dir.resolve(),
                      encoder=model or encoder, embedding_set=rep.embedding_set,
                      selection_id=res.selection_id, strategy=res.strategy, picks=res.picks,
                      classes_covered=int(classes.nunique()), random_classes_covered=rand_cov,
                      seconds=secs)
