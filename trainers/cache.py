"""Decoded-image cache for training: every image is decoded once, not once per epoch.

:func:`ensure_cache` writes the base images of a :class:`~curate.trainers.datamodule.RecordSource`
(decoded with ``curate.imageio.load_image``, shorter side resized to S and centre-cropped
by :func:`curate.trainers.augment.base_transform`: exactly what the per-image pipeline
feeds its augmentations) into the workspace, and :func:`open_cache` maps them back:

* ``WORKSPACE/data/cache/<set>-<S>px-<C>c.npy``: uint8 (N, C, S, S), a plain ``.npy``
  (never a pickle), opened memory-mapped read-only;
* ``<same>.json``: format, shape, the positions of unreadable images (zeros in the
  array, left out of training) and the *stamp*: sha256 over every file's path, size
  and modification time.

``<set>`` is a sha256 of the image set (ids and paths, in order), so another set or size
gets its own file; when a file of the set changed (the stamp differs) the cache is
stale and rebuilt in place. Writes go to temporary files renamed into place (the .json
last), so a reader sees a complete cache or none. Cost: one decode per image (on
``workers`` DataLoader processes) and one ``stat`` per image per run; N C S^2 bytes.
:func:`array_images` is the in-memory equivalent for an ``ArraySource``;
:class:`CachedDataset` serves either to the training DataLoader.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

FORMAT = "curate-train-cache-1"
MAX_BYTES = 16 << 30  # larger sets are decoded per batch instead (no cache file)


@dataclass
class CachedImages:
    """``images``: uint8 (N, C, S, S) (memory-mapped or in memory); ``valid``: int64
    positions of the readable images (the ones to train on)."""

    images: np.ndarray
    valid: np.ndarray
    path: Path | None = None

    def __len__(self) -> int:
        return len(self.valid)


class CachedDataset(torch.utils.data.Dataset):
    """Item t: ``(uint8 base image (C, S, S), label)`` of the t-th readable cached image;
    ``__getitems__`` (used by the DataLoader) reads a whole batch with one fancy index."""

    def __init__(self, cached, labels: np.ndarray):
        self.images, self.valid = cached.images, cached.valid
        self.labels = np.asarray(labels)[self.valid]

    def __len__(self) -> int:
        return len(self.valid)

    def __getitems__(self, ts):
        ts = np.asarray(ts, np.int64)
        x = np.take(self.images, self.valid[ts], axis=0)
        return torch.from_numpy(x), torch.from_numpy(self.labels[ts].astype(np.int64))

    def __getitem__(self, t: int):
        x, y = self.__getitems__([t])
        return x[0], int(y[0])


def cache_name(records, image_size: int, channels: int) -> str:
    """``<set>-<S>px-<C>c``: ``<set>`` = sha256 (24 hex) of the records' ids and paths."""
    h = hashlib.sha256(f"{FORMAT}\n".encode())
    for r in records:
        h.update(f"{r.id}\t{r.path}\n".encode())
    return f"{h.hexdigest()[:24]}-{int(image_size)}px-{int(channels)}c"


def stamp(records) -> str:
    """sha256 over each file's path, size and mtime (``missing`` when absent)."""
    h = hashlib.sha256()
    for r in records:
        try:
            st = os.stat(r.path)
            h.update(f"{r.path}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
        except OSError:
            h.update(f"{r.path}\tmissing\n".encode())
    return h.hexdigest()


def _meta(path: Path) -> dict | None:
    try:
        return json.loads(path.with_suffix(".json").read_text())
    except (OSError, ValueError):
        return None


def open_cache(path: Path | str) -> CachedImages:
    """Map ``path`` (a cache ``.npy``) read-only, with its valid positions."""
    path = Path(path)
    meta = _meta(path) or {}
    images = np.load(path, mmap_mode="r", allow_pickle=False)
    bad = np.asarray(meta.get("unreadable", []), np.int64)
    return CachedImages(images, np.setdiff1d(np.arange(len(images)), bad), path)


def is_fresh(path: Path, records, image_size: int, channels: int) -> bool:
    """True when ``path`` holds the set's base images and no file changed since."""
    meta = _meta(path)
    if not meta or meta.get("format") != FORMAT or not path.exists():
        return False
    shape = [len(records), int(channels), int(image_size), int(image_size)]
    if meta.get("shape") != shape or meta.get("stamp") != stamp(records):
        return False
    try:
        return list(np.load(path, mmap_mode="r", allow_pickle=False).shape) == shape
    except (OSError, ValueError):
        return False


def _decoded(source, image_size: int):
    """Dataset of ``(i, uint8 base image (C, S, S))`` or ``(i, None)`` per image of ``source``."""
    from curate.data import ImageDataset
    from curate.trainers.augment import base_transform

    return ImageDataset(source, base_transform(image_size))


def _as_list(items):
    return items


def ensure_cache(source, image_size: int, folder: Path | str, workers: int = 0,
                 max_bytes: int = MAX_BYTES) -> Path | None:
    """The fresh cache file of ``source`` (a RecordSource) at ``image_size`` under
    ``folder``, built when missing or stale; None when it would exceed ``max_bytes`` or
    the free disk space (the caller then decodes per batch)."""
    recs, c, s = source.records, int(source.channels), int(image_size)
    folder = Path(folder)
    path = folder / f"{cache_name(recs, s, c)}.npy"
    if is_fresh(path, recs, s, c):
        return path
    nbytes = len(recs) * c * s * s
    folder.mkdir(parents=True, exist_ok=True)
    if nbytes > max_bytes or nbytes + (1 << 30) > shutil.disk_usage(folder).free:
        return None
    st = stamp(recs)  # before decoding: a file changed meanwhile makes the next run rebuild
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.npy")
    tmp_meta = path.with_name(f".{path.stem}.{os.getpid()}.tmp.json")
    bad: list[int] = []
    try:
        arr = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(len(recs), c, s, s))
        loader = torch.utils.data.DataLoader(_decoded(source, s), batch_size=64, num_workers=workers,
                                             collate_fn=_as_list)
        for items in loader:
            for i, x in items:
                if x is None:
                    bad.append(i)
                else:
                    arr[i] = x.numpy()
        arr.flush()
        del arr
        os.replace(tmp, path)
        tmp_meta.write_text(json.dumps({"format": FORMAT, "shape": [len(recs), c, s, s],
                                        "stamp": st, "unreadable": sorted(bad)}))
        os.replace(tmp_meta, path.with_suffix(".json"))
    finally:
        for t in (tmp, tmp_meta):
            if t.exists():
                t.unlink()
    return path


def array_images(source, image_size: int) -> CachedImages:
    """In-memory base images of an ``ArraySource`` (or any source with ``load``)."""
    ds = _decoded(source, image_size)
    items = [ds[i] for i in range(len(ds))]
    valid = np.array([i for i, x in items if x is not None], np.int64)
    shape = (int(source.channels), int(image_size), int(image_size))
    images = np.zeros((len(items), *shape), np.uint8)
    for i, x in items:
        if x is not None:
            images[i] = x.numpy()
    return CachedImages(images, valid)
