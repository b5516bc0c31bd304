"""Images from the index: records, labels, batches, and the one torch image dataset
(:class:`ImageDataset`, used by ``embed``, prediction and the trainers)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import PIL.Image
import torch
from sqlalchemy import select

from curate.db.models import Batch, Image, Label
from curate.errors import CurateError
from curate.imageio import load_image


@dataclass
class ImageRecord:
    id: int
    path: str
    label: str | None = None


def list_images(index, batch: str | None = None, with_labels: bool = False,
                exclude_ids: set[int] | None = None) -> list[ImageRecord]:
    """Ok images (optionally of one batch) ordered by id, with their best label.

    Label precedence: label-studio, then manifest, then folder.
    """
    with index.session() as s:
        q = select(Image.id, Image.path).where(Image.status == "ok").order_by(Image.id)
        if batch is not None:
            b = s.scalar(select(Batch).where(Batch.name == batch))
            if b is None:
                raise CurateError(f"no batch named {batch!r}")
            q = q.where(Image.batch_id == b.id)
        recs = [ImageRecord(i, p) for i, p in s.execute(q)]
        if with_labels:
            labels = image_labels(s)
            for r in recs:
                r.label = labels.get(r.id)
    if exclude_ids:
        recs = [r for r in recs if r.id not in exclude_ids]
    return recs


_PRECEDENCE = {"label-studio": 3, "manifest": 2, "folder": 1}


def image_labels(session, among=None) -> dict[int, str]:
    """image id -> label (status 'labeled' only), the most trusted source winning
    (label-studio, then manifest, then folder). ``among``: a ``select`` of image ids to
    restrict to (one query), e.g. a selection's items; None = every image."""
    best: dict[int, tuple[int, str]] = {}
    q = select(Label.image_id, Label.label, Label.source).where(
        Label.status == "labeled", Label.label.is_not(None))
    if among is not None:
        q = q.where(Label.image_id.in_(among))
    rows = session.execute(q)
    for iid, lab, src in rows:
        rank = _PRECEDENCE.get(src, 0)
        if iid not in best or rank > best[iid][0]:
            best[iid] = (rank, lab)
    return {k: v[1] for k, v in best.items()}


def image_batches(session, ids: Sequence[int] | None = None) -> dict[int, str | None]:
    """image id -> name of the batch it was ingested in (None for no batch); ``ids``
    limits the query (chunks of 900 ids), else every image."""
    q = select(Image.id, Batch.name).outerjoin(Batch, Batch.id == Image.batch_id)
    if ids is None:
        return dict(session.execute(q).all())
    ids = [int(i) for i in ids]
    out: dict[int, str | None] = {}
    for k in range(0, len(ids), 900):
        out.update(session.execute(q.where(Image.id.in_(ids[k:k + 900]))).all())
    return out


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
