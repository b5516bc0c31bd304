"""``curate embed``: batched, resumable inference of an encoder over the index.

Only images without a row in the embedding set are embedded, so a rerun after a
crash (or after new ingests) finishes the work without duplicates. Images whose
file vanished or broke since ingest are marked rejected and skipped.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from curate.data import ImageDataset, collate_skip_missing, list_images
from curate.embeddings import (DTYPES, append_shard, drop_damaged_shards, relative_set_path,
                               safe_name, set_folder)
import curate.trainers.encoder  # noqa: F401  (registers the "trained" encoder)
from curate.encoders import ENCODERS
from curate.errors import CurateError
from curate.locks import file_lock
from curate.provenance import sha256_file, versions
from curate.validation import resolve_device


SPEED_FILE = "embed_speed.json"


@dataclass
class EmbedReport:
    embedding_set: str
    model: str
    dim: int
    dtype: str
    embedded: int = 0
    already: int = 0
    missing_files: list[str] = field(default_factory=list)
    damaged_shards: list[str] = field(default_factory=list)
    seconds: float = 0.0
    device: str = "cpu"

    @property
    def images_per_second(self) -> float:
        return self.embedded / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict:
        return {**self.__dict__, "images_per_second": round(self.images_per_second, 1)}


def _model_row(index, encoder: str | None, weights: str | None, model: str | None,
               image_size: int | None):
    """The model row to embed with: ``model`` (a trained run's), else the row of
    ``encoder`` with ``weights``, created once (:meth:`~curate.db.store.embeddings.
    EmbeddingQueries.ensure_model`)."""
    if model is not None:
        return index.model(model)
    if encoder is None:
        raise CurateError("give --encoder NAME (or --model RUN)")
    ENCODERS.get(encoder)  # validates the name before any work
    from curate.encoders.weights import resolve_weights, weights_name

    wpath = resolve_weights(encoder, weights)  # a file, or a torchvision name -> its cached file
    sha = sha256_file(wpath) if wpath else None
    name = f"{encoder}-{sha[:12]}" if sha else f"{encoder}-{image_size or 'default'}"
    named = weights_name(weights)
    return index.ensure_model(name, encoder=encoder, weights_path=str(wpath) if wpath else None,
                              weights_sha256=sha, params={"weights_name": named} if named else {})


def _build_encoder(row, ws, image_size: int | None, records, loader_kw):
    params = dict(row.params or {})
    size = image_size or params.pop("image_size", None)
    params.pop("image_size", None)
    state_file = ws.models_dir / f"{safe_name(row.name)}.npz"
    enc = ENCODERS.get(row.encoder)(
        weights=Path(row.weights_path) if row.weights_path else None, image_size=size, **params)
    if enc.needs_fit:  # fitted once: a concurrent embed waits for the fit, then loads it
        with file_lock(state_file.with_suffix(".lock")):
            if state_file.exists():
                with np.load(state_file, allow_pickle=False) as z:
                    enc.set_state(dict(z))
            else:
                ds = ImageDataset(records, enc.transform, enc.channels)
                loader = torch.utils.data.DataLoader(ds, collate_fn=collate_skip_missing, **loader_kw)
                enc.fit(b for _, b, _ in loader if b is not None)
                tmp = state_file.with_suffix(f".{os.getpid()}.tmp.npz")
                np.savez(tmp, **enc.get_state())
                os.replace(tmp, state_file)
    return enc


@dataclass
class _Plan:
    """What an embed run does, decided once (shared by the local and the Ray path)."""
    enc: object
    dev: torch.device
    es: object  # the embedding set row (index.embedding_set)
    folder: Path
    todo: list
    report: EmbedReport
    loader_kw: dict


def encode_records(enc, records, dev: torch.device, loader_kw: dict, proba: bool = False):
    """Yield ``(ids int64[b], Z float32[b, dim], missing_records, n)`` per loader batch of
    ``n`` of ``records``: images that load are encoded (fp16 autocast on CUDA); rows with a
    non-finite embedding are left out of ``ids``/``Z``; files that vanished or broke
    since ingest are in ``missing_records``. The local and the Ray path both use this.
    ``proba``: ``Z`` is the encoder's class probabilities (b, K) instead (a classifier head)."""
    loader = torch.utils.data.DataLoader(ImageDataset(records, enc.transform, enc.channels),
                                         collate_fn=collate_skip_missing, **loader_kw)
    fn, width = (enc.predict_proba, len(enc.classes)) if proba else (enc.encode, enc.dim)
    for idx, x, missing in loader:
        n = len(idx) + len(missing)
        ids = np.empty(0, dtype=np.int64)
        z = np.empty((0, width), dtype=np.float32)
        if x is not None:
            x = x.to(dev, non_blocking=True)
            with torch.autocast("cuda", dtype=torch.float16, enabled=dev.type == "cuda"):
                z = fn(x)
            z = z.float().cpu().numpy()
            ok = np.isfinite(z).all(1)
            ids = np.array([records[i].id for i in idx.tolist()], dtype=np.int64)[ok]
            z = z[ok]
        yield ids, z, [records[i] for i in missing], n


def predict_proba(index, ws, model: str, batch: str | None = None, batch_size: int = 128,
                  device: str = "auto") -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Class probabilities of the ok images (of ``batch``) under the trained ``model``.

    Returns ``(image_ids int64[N], probs float32[N, K], classes)``; unreadable files are
    skipped. Works for classifier runs and NCL runs trained ``--with-ce``; feed ``probs``
    to :func:`curate.novelty.softmax.softmax_novelty` for the softmax baseline score.
    """
    row = index.model(model)
    if row.encoder != "trained" or not row.weights_path:
        raise CurateError(f"model {model!r} is not a trained run")
    enc = ENCODERS.get("trained")(weights=row.weights_path)
    if not hasattr(enc, "predict_proba"):
        raise CurateError(f"model {model!r} has no classifier head")
    dev = torch.device(resolve_device(device))
    enc.to(dev)
    out = list(encode_records(enc, list_images(index, batch=batch), dev,
                              {"batch_size": batch_size}, proba=True))
    ids = np.concatenate([o[0] for o in out]) if out else np.empty(0, np.int64)
    if not len(ids):
        raise CurateError("no readable images to classify")
    return ids, np.concatenate([o[1] for o in out]), list(enc.classes)


def mark_missing(index, records) -> None:
    """Mark images whose file vanished or broke since ingest as rejected."""
    if records:
        index.mark_rejected([r.id for r in records], "file missing or unreadable at embed time")


def _plan(index, ws, encoder, weights, model, batch, image_size, device, dtype, batch_size,
          num_workers, shard_size) -> _Plan:
    if dtype not in DTYPES:
        raise CurateError(f"unknown dtype {dtype!r}; use float32 or float16")
    if image_size is not None and not 8 <= image_size <= 1024:
        raise CurateError(f"--image-size {image_size} is out of range (8-1024)")
    if batch_size < 1 or shard_size < 1:
        raise CurateError(f"--batch-size must be at least 1, got {batch_size}")
    dev = torch.device(resolve_device(device))
    row = _model_row(index, encoder, weights, model, image_size)
    records = list_images(index, batch=batch)
    if not records:
        raise CurateError("no ingested images" + (f" in batch {batch!r}" if batch else "")
                          + "; run `curate ingest` first")
    if num_workers is None:
        num_workers = 0 if len(records) < 2000 else min(4, os.cpu_count() or 1)
    loader_kw = dict(batch_size=batch_size, num_workers=num_workers,
                     pin_memory=dev.type == "cuda")
    enc = _build_encoder(row, ws, image_size, records, loader_kw)
    set_name = f"{row.name}@{enc.image_size}"
    es = index.ensure_embedding_set(set_name, model_id=row.id, dim=enc.dim, dtype=dtype,
                                    path=relative_set_path(set_name), params=enc.params(),
                                    versions=versions())
    if es.dtype != dtype:
        raise CurateError(f"embedding set {set_name} stores {es.dtype}; rerun with --dtype {es.dtype}")
    folder = set_folder(ws.data_dir, es)
    damaged = drop_damaged_shards(index, es, folder)  # their images are embedded again below
    done = np.isin(np.fromiter((r.id for r in records), np.int64, len(records)),
                   index.embedded_ids(es.id))
    todo = [r for r, d in zip(records, done) if not d]
    report = EmbedReport(set_name, row.name, enc.dim, dtype, already=len(records) - len(todo),
                         device=str(dev), damaged_shards=damaged)
    return _Plan(enc, dev, es, folder, todo, report, loader_kw)


def embed(index, ws, encoder: str | None = None, weights: str | None = None,
          model: str | None = None, batch: str | None = None, image_size: int | None = None,
          device: str = "auto", dtype: str = "float32", batch_size: int = 64,
          num_workers: int | None = None, shard_size: int = 10000,
          progress: Callable[[int, int], None] | None = None, ray: str | None = None,
          ray_actors: int | None = None) -> EmbedReport:
    """Embed every ok image (of ``batch``) missing from the encoder's embedding set.

    Returns an :class:`EmbedReport`. Cost: one forward pass per new image.
    ``ray``: a Ray cluster address (``auto``, ``host:port``) or ``local`` to run the
    forward passes on Ray actors (:mod:`curate.embed_ray`; same shards and rows).
    """
    if ray is not None:
        from curate.embed_ray import check_cluster, embed_on_ray, ray_session
        if device not in ("auto", "cpu") and not device.startswith("cuda"):
            raise CurateError(f"unknown device {device!r}; use auto, cpu or cuda")
        with ray_session(ray):
            check_cluster(index, ray)  # before any work: every worker must reach the index
            plan = _plan(index, ws, encoder, weights, model, batch, image_size, "cpu",  # fit only
                         dtype, batch_size, num_workers, shard_size)
            if not plan.todo:
                return plan.report
            report = embed_on_ray(index, plan, ray, device=device, shard_size=shard_size,
                                  actors=ray_actors, num_workers=num_workers, progress=progress)
        record_speed(plan.folder, report)
        return report
    plan = _plan(index, ws, encoder, weights, model, batch, image_size, device, dtype,
                 batch_size, num_workers, shard_size)
    report, todo = plan.report, plan.todo
    if not todo:
        return report
    enc, dev, folder, es = plan.enc, plan.dev, plan.folder, plan.es
    enc.to(dev)
    t0 = time.perf_counter()
    buf_ids, buf_x = [], []

    def flush():
        if not buf_ids:
            return
        ids = np.concatenate(buf_ids)
        added = append_shard(index, es, ids, np.concatenate(buf_x), folder)
        report.embedded -= len(ids) - added  # another embed stored these meanwhile
        report.already += len(ids) - added
        buf_ids.clear()
        buf_x.clear()

    seen = 0
    for ids, z, missing, n in encode_records(enc, todo, dev, plan.loader_kw):
        if missing:
            report.missing_files += [r.path for r in missing]
            mark_missing(index, missing)
        buf_ids.append(ids)
        buf_x.append(z)
        report.embedded += len(ids)
        seen += n
        if progress:
            progress(seen, len(todo))
        if sum(len(b) for b in buf_ids) >= shard_size:
            flush()
    flush()
    report.seconds = time.perf_counter() - t0
    record_speed(folder, report)
    return report


def record_speed(folder: Path, report: EmbedReport) -> None:
    """Write this run's speed next to the set's shards (``embed_speed.json``: images,
    seconds, images/s, device; the latest run's), shown by ``curate compare``."""
    if not report.embedded or report.seconds <= 0:
        return
    import json

    path = Path(folder) / SPEED_FILE
    tmp = path.with_name(f".{SPEED_FILE}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps({"images": report.embedded, "seconds": round(report.seconds, 3),
                                   "images_per_second": round(report.images_per_second, 1),
                                   "device": report.device}) + "\n")
        os.replace(tmp, path)
    except OSError:
        pass  # a record only; the embeddings are stored already
