"""One LightningDataModule for every trainer: images from the index (or arrays) -> views.

A *source* yields PIL images: :class:`curate.data.RecordSource` reads index records through
``curate.imageio.load_image`` (a file that vanished since ingest is skipped),
:class:`ArraySource` wraps uint8 arrays (N, H, W) or (N, H, W, 3) for benchmarks and
tests that bypass the database. :class:`ViewDataset` turns each image into the
method's list of views (``view_fn``, see :mod:`curate.trainers.augment`) plus an
integer label (-1 when unlabelled). Batches are ``(views: list[(B, C, s, s)], labels:
int64[B])``; training drops the last incomplete batch (equal shapes across DDP ranks).

``ImageDataModule.from_index(index, batch=...)`` lists the ok images (optionally of one
batch), records what was used (``data_info``: batch, image count, sha256 of the sorted
ids). With ``holdout_fraction > 0`` (``curate train`` default 0.1) a seeded random
share of the images is kept out of training altogether (:func:`holdout_split`): the
encoder never sees them, so they are the in-distribution test set of the sensitivity
score (thesis 003 §3.4, ``curate tune-scorer``); ``split_ids`` holds the trained and
held-out image ids (written next to the run by :func:`curate.trainers.fit.fit_run`).
With ``knn_holdout > 0`` a stratified split of the remaining labelled images is also
kept out of training, for the k-NN monitor.

Pipelines (``pipeline()``): when every view has a ``ViewSpec`` (SimCLR, MoCo, DINO,
autoencoder, ...) and no trainer dataset hook is set, the loader yields uint8 base
images (B, C, S, S) and the views are made per batch after the transfer to the device
(:mod:`curate.trainers.batch_augment`; on CPU in channels-last layout): ``batched-cache``
reads them from the decoded-image cache (:mod:`curate.trainers.cache`, ``cache_dir``;
in memory for an ``ArraySource``), ``batched`` decodes them per batch (no cache folder,
or a set larger than the cache limit). Otherwise (``per-image``, or ``batched=False``)
each image's views are made one at a time in the loader (:class:`ViewDataset`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Sequence

import lightning as L
import numpy as np
import torch
from PIL import Image

from curate.data import ImageDataset, ImageRecord, RecordSource, list_images
from curate.errors import CurateError
from curate.imageio import EXTENSIONS
from curate.provenance import add_ids_hashes


class ArraySource:
    """In-memory uint8 images (N, H, W) or (N, H, W, 3); converted to ``channels``."""

    def __init__(self, images: np.ndarray, channels: int | None = None):
        self.images = np.asarray(images)
        if self.images.dtype != np.uint8 or self.images.ndim not in (3, 4):
            raise CurateError("array images must be uint8 (N, H, W) or (N, H, W, 3)")
        self.channels = channels or (1 if self.images.ndim == 3 else 3)

    def __len__(self) -> int:
        return len(self.images)

    def load(self, i: int) -> Image.Image:
        im = Image.fromarray(self.images[i])
        return im.convert("RGB" if self.channels == 3 else "L")


class ViewDataset(ImageDataset):
    """Item ``i``: ``(view_fn(image), label)``, or None for an unreadable image."""

    def __init__(self, source, view_fn: Callable[[Image.Image], Any],
                 labels: Sequence[int] | np.ndarray | None = None):
        super().__init__(source, view_fn)
        self.view_fn = view_fn
        self.labels = np.full(len(source), -1, np.int64) if labels is None else np.asarray(labels)

    def __getitem__(self, i: int):
        _, views = super().__getitem__(i)
        return None if views is None else (views, int(self.labels[i]))


def _batch_as_is(batch):
    return batch


def collate_base(items):
    """Stack base images -> (uint8 (B, C, S, S), int64[B]); drops None items."""
    items = [it for it in items if it is not None]
    if not items:
        return None
    return torch.stack([it[0] for it in items]), torch.tensor([it[1] for it in items], dtype=torch.long)


def collate_views(items):
    """Stack view j of every item -> list of (B, C, s_j, s_j); labels -> int64[B]."""
    items = [it for it in items if it is not None]
    if not items:
        return None
    views = [torch.stack([it[0][j] for it in items]) for j in range(len(items[0][0]))]
    return views, torch.tensor([it[1] for it in items], dtype=torch.long)


def label_codes(labels: Sequence[str | None]) -> tuple[np.ndarray, list[str]]:
    """String labels -> (int64 codes, -1 for None; sorted class names)."""
    classes = sorted({lab for lab in labels if lab is not None})
    pos = {c: i for i, c in enumerate(classes)}
    return np.array([pos[lab] if lab is not None else -1 for lab in labels], np.int64), classes


def default_workers() -> int:
    return max(0, min(4, (os.cpu_count() or 1) - 1))


def holdout_split(n: int, fraction: float, seed: int) -> np.ndarray:
    """Sorted positions of the never-trained holdout among ``n`` images (ordered by id):
    the first ``round(fraction * n)`` of ``default_rng(seed).permutation(n)``; empty when
    that leaves fewer than 2 training images. Reproducible from (ids, fraction, seed)."""
    if not 0.0 <= float(fraction) < 1.0:
        raise CurateError(f"--holdout-fraction must be in [0, 1), got {fraction}")
    k = int(round(float(fraction) * n))
    if k < 1 or n - k < 2:
        return np.empty(0, np.int64)
    return np.sort(np.random.default_rng(seed).permutation(n)[:k])


def stratified_holdout(codes: np.ndarray, fraction: float, max_n: int, seed: int) -> np.ndarray:
    """Indices of a stratified held-out split among labelled items (codes >= 0)."""
    rng = np.random.default_rng(seed)
    out = []
    lab = np.flatnonzero(codes >= 0)
    n_total = min(max_n, int(round(fraction * len(lab))))
    for c in np.unique(codes[lab]):
        idx = lab[codes[lab] == c]
        k = int(round(n_total * len(idx) / max(1, len(lab))))
        if len(idx) >= 2 and k > 0:
            out.append(rng.choice(idx, size=min(k, len(idx) - 1), replace=False))
    return np.sort(np.concatenate(out)) if out else np.empty(0, np.int64)


class ImageDataModule(L.LightningDataModule):
    """Training views for a method plus optional k-NN monitor sets.

    ``source``/``labels``: the training images; ``view_fn``: PIL -> list of views;
    ``knn_reference``/``knn_holdout``: ``(source, int labels)`` pairs loaded with
    ``eval_fn`` by :class:`curate.trainers.knn_monitor.KNNMonitor`. ``sampler_fn``
    (labels -> torch Sampler) lets metric trainers use class-balanced batches.
    """

    def __init__(self, source, view_fn: Callable, labels: np.ndarray | None = None,
                 batch_size: int = 256, num_workers: int | None = None,
                 knn_reference=None, knn_holdout=None, eval_fn: Callable | None = None,
                 sampler_fn: Callable | None = None, data_info: dict | None = None,
                 classes: list[str] | None = None, cache_dir: Path | str | None = None,
                 batched: bool = True):
        super().__init__()
        if len(source) < 2:
            raise CurateError(f"training needs at least 2 images, got {len(source)}")
        self.source, self.view_fn, self.labels = source, view_fn, labels
        self.batch_size = int(batch_size)
        if self.batch_size < 2:
            raise CurateError("--batch-size must be at least 2")
        self.num_workers = default_workers() if num_workers is None else int(num_workers)
        self.knn_reference, self.knn_holdout, self.eval_fn = knn_reference, knn_holdout, eval_fn
        self.sampler_fn, self.classes = sampler_fn, classes or []
        # (source, view_fn, labels) -> Dataset instead of ViewDataset; set by a trainer's
        # bind_data (siamese pairs, curate.trainers.methods.metric)
        self.dataset_fn: Callable | None = None
        self.data_info = dict(data_info or {}, images=len(source))
        self.split_ids: dict[str, np.ndarray] | None = None  # set by from_index
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.batch_views = view_fn.batched() if batched and hasattr(view_fn, "batched") else None
        self._cached: Any = None  # CachedImages, False (no cache) or None (not looked up)

    @classmethod
    def from_index(cls, index, view_fn: Callable, image_size: int, channels: int = 3,
                   batch: str | None = None, knn_holdout: float = 0.0, seed: int = 0,
                   eval_fn: Callable | None = None, max_reference: int = 5000,
                   labelled_only: bool = False, holdout_fraction: float = 0.0,
                   **kwargs) -> "ImageDataModule":
        """Ok images of ``batch`` (or all) from the index; see the module docstring.

        ``labelled_only``: keep labelled images only (metric learning).
        ``holdout_fraction``: share of the images never trained on (:func:`holdout_split`,
        seeded by ``seed``); recorded in ``data_info["holdout_split"]``."""
        recs = list_images(index, batch=batch, with_labels=True)
        where = f"batch {batch!r}" if batch else "the index"
        if not recs:
            raise CurateError(f"no ok images in {where}; ingest images first")
        if labelled_only:
            recs = [r for r in recs if r.label is not None]
            if not recs:
                raise CurateError(f"no labelled images in {where}; this method needs labels")
        out = holdout_split(len(recs), holdout_fraction, seed)
        held, drop = [recs[i].id for i in out], set(out.tolist())
        recs = [r for i, r in enumerate(recs) if i not in drop]
        codes, classes = label_codes([r.label for r in recs])
        info = add_ids_hashes({"batch": batch, "labelled": int((codes >= 0).sum()),
                               "classes": len(classes)}, ids_sha256=[r.id for r in recs])
        ref = hold = None
        if knn_holdout > 0:
            if len(classes) < 2:
                raise CurateError("--knn-monitor needs labelled images of at least 2 classes")
            h = stratified_holdout(codes, knn_holdout, 2000, seed)
            keep = np.setdiff1d(np.arange(len(recs)), h)
            ref_idx = keep[codes[keep] >= 0]
            ref_idx = np.random.default_rng(seed).permutation(ref_idx)[:max_reference]
            ref = (RecordSource([recs[i] for i in ref_idx], channels), codes[ref_idx])
            hold = (RecordSource([recs[i] for i in h], channels), codes[h])
            info["holdout"] = len(h)
            knn_ids = [recs[i].id for i in h]
            recs, codes = [recs[i] for i in keep], codes[keep]
            add_ids_hashes(info, holdout_ids_sha256=knn_ids, ids_sha256=[r.id for r in recs])
        train_ids = np.array([r.id for r in recs], np.int64)
        info["holdout_split"] = add_ids_hashes({
            "fraction": float(holdout_fraction), "seed": int(seed), "n_train": len(train_ids),
            "n_holdout": len(held),
            "rule": "ok images ordered by id; held out: the first round(fraction*n) "
                    "positions of numpy default_rng(seed).permutation(n)"},
            holdout_ids_sha256=held, train_ids_sha256=train_ids)
        from curate.trainers.augment import eval_transform

        dm = cls(RecordSource(recs, channels), view_fn, labels=codes, knn_reference=ref,
                 knn_holdout=hold, eval_fn=eval_fn or eval_transform(image_size, channels),
                 data_info=info, classes=classes, **kwargs)
        dm.split_ids = {"train": train_ids, "holdout": np.array(held, np.int64)}
        return dm

    def save_split(self, folder: Path | str) -> dict:
        """Write ``split_ids`` to ``folder/split.npz`` (``train_ids``, ``holdout_ids``;
        temporary file + rename) and return ``data_info`` with the file's path and the
        ids' hashes (:func:`curate.provenance.ids_hash`) under ``holdout_split``; read
        back by :func:`curate.provenance.read_split`. No split: ``data_info`` as is. Both
        with :meth:`input_record` (the pipeline as planned; the run's end records it again)."""
        if self.split_ids is None:
            return dict(self.data_info, **self.input_record())
        path = Path(folder) / "split.npz"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".split.{os.getpid()}.tmp.npz")
        np.savez(tmp, train_ids=self.split_ids["train"], holdout_ids=self.split_ids["holdout"])
        os.replace(tmp, path)
        split = add_ids_hashes(dict(self.data_info["holdout_split"], path=str(path)),
                               train_ids_sha256=self.split_ids["train"],
                               holdout_ids_sha256=self.split_ids["holdout"])
        return dict(self.data_info, holdout_split=split, **self.input_record())

    # ------------------------------------------------------------ pipelines
    def pipeline(self) -> str:
        """``batched-cache``, ``batched`` or ``per-image`` (module docstring)."""
        if self.batch_views is None or self.dataset_fn is not None:
            return "per-image"
        if isinstance(self.source, RecordSource) and self.cache_dir is None:
            return "batched"
        if self._cached is False:
            return "batched"
        return "batched-cache"

    def input_record(self) -> dict:
        """What fed the run, for its record: ``pipeline`` and, with the cache, its file
        and the number of unreadable images left out."""
        out = {"pipeline": self.pipeline()}
        out.update({k: self.data_info[k] for k in ("cache", "unreadable") if k in self.data_info})
        return out

    def prepare_data(self):
        """Build the decoded-image cache (once per node, before the loaders)."""
        if self.pipeline() == "batched-cache":
            self._base_images()

    def _base_images(self):
        from curate.trainers import cache

        if self._cached is None:
            size = self.view_fn.image_size
            if isinstance(self.source, RecordSource):
                path = cache.ensure_cache(self.source, size, self.cache_dir, self.num_workers)
                self._cached = cache.open_cache(path) if path is not None else False
                if path is not None:
                    self.data_info.update(cache=str(path), unreadable=len(self.source) - len(self._cached))
            else:
                self._cached = cache.array_images(self.source, size)
        return self._cached or None

    def on_after_batch_transfer(self, batch, dataloader_idx):
        """Batched pipelines: uint8 base images -> the method's views, on the device;
        random parameters from a generator seeded by torch's seed and the rank."""
        if batch is None or self.batch_views is None or not torch.is_tensor(batch[0]):
            return batch
        x, y = batch
        if getattr(self, "_generator", None) is None:  # seeded (seed_everything), one per rank
            rank = self.trainer.global_rank if self.trainer is not None else 0
            self._generator = torch.Generator().manual_seed(
                (torch.initial_seed() + 1_000_003 * (rank + 1)) % 2**63)
        views = self.batch_views(x, self._generator)
        if x.device.type == "cpu":
            views = [v.contiguous(memory_format=torch.channels_last) for v in views]
        return views, y

    def effective_batch_size(self, world_size: int = 1) -> int:
        """``batch_size`` capped so that every rank gets at least one full batch."""
        return max(1, min(self.batch_size, len(self.source) // max(1, world_size)))

    def train_dataloader(self):
        world = self.trainer.world_size if self.trainer is not None else 1
        bs = self.effective_batch_size(world)
        if bs < 2:
            raise CurateError(f"{len(self.source)} images are too few for {world} processes")
        labels = np.full(len(self.source), -1, np.int64) if self.labels is None else self.labels
        workers, collate = self.num_workers, collate_views
        kind = self.pipeline()
        cached = self._base_images() if kind == "batched-cache" else None
        if cached is not None:  # memory-mapped uint8 batches: no worker processes needed
            from curate.trainers.cache import CachedDataset

            ds, workers, collate = CachedDataset(cached, labels), 0, _batch_as_is
            labels = ds.labels
        elif kind != "per-image":
            from curate.trainers.augment import base_transform

            ds = ViewDataset(self.source, base_transform(self.view_fn.image_size), labels)
            collate = collate_base
        else:
            make = self.dataset_fn or ViewDataset
            ds = make(self.source, self.view_fn, self.labels)
        sampler = self.sampler_fn(labels) if self.sampler_fn else None
        return torch.utils.data.DataLoader(
            ds, batch_size=bs, shuffle=sampler is None, sampler=sampler, drop_last=True,
            num_workers=workers, collate_fn=collate, persistent_workers=workers > 0)


def folder_records(folder: Path | str) -> list[ImageRecord]:
    """Image files under ``folder`` (recursive, sorted) as records with negative ids."""
    root = Path(folder)
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in EXTENSIONS and p.is_file())
    return [ImageRecord(-(i + 1), str(p)) for i, p in enumerate(files)]


def aux_source(index, aux: str, channels: int = 3) -> tuple[RecordSource, dict]:
    """Auxiliary images from an ingested batch named ``aux`` or from a folder ``aux``."""
    recs: list[ImageRecord] = []
    kind = None
    if index is not None:
        try:
            recs, kind = list_images(index, batch=aux), "batch"
        except CurateError:
            recs = []
    if not recs:
        p = Path(aux).expanduser()
        if not p.is_dir():
            raise CurateError(f"auxiliary images {aux!r}: no such folder or ingested batch")
        recs, kind = folder_records(p), "folder"
    if not recs:
        raise CurateError(f"auxiliary images {aux!r}: no images found")
    return RecordSource(recs, channels), {"aux": str(aux), "aux_kind": kind, "aux_images": len(recs)}
