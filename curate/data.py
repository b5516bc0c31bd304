"""Images from the index: records, labels, batches, and the one torch image dataset
(:class:`ImageDataset`, used by ``embed``, prediction and the trainers)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import PIL.Image
import torch

from curate.imageio import load_image


@dataclass
class ImageRecord:
    id: int
    path: str
    label: str | None = None


def list_images(index, batch: str | None = None, with_labels: bool = False,
                exclude_ids: set[int] | None = None) -> list[ImageRecord]:
    """Ok images (optionally of one batch) ordered by id, with their best label
    (``index.labels()``: label-studio, then manifest, then folder). Two queries."""
    recs = [ImageRecord(i, p) for i, p in index.image_paths(batch, "ok")]
    if with_labels:
        labels = index.labels()
        for r in recs:
            r.label = labels.get(r.id)
    if exclude_ids:
        recs = [r for r in recs if r.id not in exclude_ids]
    return recs


#: what loading an image that vanished or broke since ingest may raise
UNREADABLE = (OSError, ValueError, SyntaxError, PIL.Image.DecompressionBombError)


class RecordSource:
    """Images at ``records[i].path`` loaded as RGB (``channels=3``) or L (``channels=1``)
    through :func:`curate.imageio.load_image`; ``load(i)`` is None for a file that vanished
    or broke since ingest (a decompression bomb swapped in included)."""

    def __init__(self, records: Sequence[ImageRecord], channels: int = 3):
        self.records, self.channels = list(records), channels

    def __len__(self) -> int:
        return len(self.records)

    def load(self, i: int) -> PIL.Image.Image | None:
        try:
            return load_image(self.records[i].path, self.channels)
        except UNREADABLE:
            return None


class ImageDataset(torch.utils.data.Dataset):
    """Item ``i``: ``(i, transform(image_i))``, or ``(i, None)`` for an unreadable image
    (dropped by :func:`collate_skip_missing`, which reports its index).

    ``source``: anything with ``len`` and ``load(i) -> PIL image | None`` (a
    :class:`RecordSource`, the trainers' ``ArraySource``) or a sequence of
    :class:`ImageRecord` (read through a RecordSource with ``channels``). The one image
    dataset: embedding, prediction, the trainers' views (``ViewDataset``) and caches.
    """

    def __init__(self, source, transform: Callable, channels: int = 3):
        self.source = source if hasattr(source, "load") else RecordSource(source, channels)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, i: int):
        img = self.source.load(i)
        return i, (None if img is None else self.transform(img))


def collate_skip_missing(items):
    """Batch ``(i, tensor)`` items, returning (kept indices, stacked tensor, missing indices)."""
    kept = [(i, t) for i, t in items if t is not None]
    missing = [i for i, t in items if t is None]
    if not kept:
        return torch.empty(0, dtype=torch.long), None, missing
    idx, ts = zip(*kept)
    return torch.tensor(idx), torch.stack(ts), missing
