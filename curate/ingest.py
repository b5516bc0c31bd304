"""``curate ingest``: walk folders or read manifests, validate, hash and index images.

Every file is read once (:func:`curate.imageio.inspect_image`: only regular files,
bounded size, supported formats only): hashed (sha256) and fully decoded. Bad files
are recorded as rejected with a reason and looked at again on every rerun; the same
bytes under a second path are one image (the extra path is recorded as a duplicate).
The database holds that rule (a unique index on sha256 among ok images), so
concurrent ingests cannot store one image twice: a chunk that lost a race is
retried against what the other process committed (the writes are the store's:
:meth:`~curate.db.store.images.ImageQueries.record_images`). Work is committed in
chunks, so a rerun after a crash skips what is recorded and finishes the rest.

What is read is limited to the given roots (:mod:`curate.ingest_inputs`): a symlink
leaving the folder it was found in, or a manifest path outside the manifest's folder,
is skipped (and reported) unless ``allow_outside``.
"""

from __future__ import annotations

import time
import warnings
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from curate.db.store.images import BATCH_NAME_LIMIT
from curate.errors import CurateError
from curate.imageio import DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS, inspect_images
from curate.ingest_inputs import collect

__all__ = ["IngestReport", "check_batch_name", "collect", "ingest"]

DEFAULT_BATCH = "default"
AHEAD = 2   # chunks being read and decoded while the oldest one is recorded
FIRST_CHUNK, MAX_CHUNK = 1024, 16384   # chunk sizes double from the first to the largest
SLICE = 256  # files per task handed to a decoding thread


@dataclass
class IngestReport:
    batch: str
    files: int = 0
    added: int = 0
    duplicates: int = 0
    already: int = 0
    labels: int = 0
    recovered: int = 0   # rejected before, ok now (re-checked on every run)
    rejected: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)     # never read
    conflicts: list[tuple[str, list[str]]] = field(default_factory=list)  # no label stored
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return {"batch": self.batch, "files": self.files, "added": self.added,
                "duplicates": self.duplicates, "already_indexed": self.already,
                "labels": self.labels, "recovered": self.recovered,
                "rejected": len(self.rejected),
                "rejected_files": [{"path": p, "reason": r} for p, r in self.rejected],
                "skipped": len(self.skipped),
                "skipped_files": [{"path": p, "reason": r} for p, r in self.skipped],
                "label_conflicts": [{"path": p, "labels": labs} for p, labs in self.conflicts],
                "seconds": round(self.seconds, 3)}


def check_batch_name(name: str | None) -> str:
    """The batch name to use: ``default`` for None; empty, over-long or control-character
    names are refused (the same on SQLite and PostgreSQL)."""
    if name is None:
        return DEFAULT_BATCH
    if not name.strip():
        raise CurateError("--batch must not be empty (leave it out for 'default')")
    if len(name) > BATCH_NAME_LIMIT:
        raise CurateError(f"batch name is {len(name)} characters; the limit is {BATCH_NAME_LIMIT}")
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise CurateError("batch name must not contain control characters")
    return name


def ingest(index, paths: list[str | Path], batch: str | None = None, labels: str | None = None,
           max_pixels: int = DEFAULT_MAX_PIXELS, workers: int = 4, chunk_size: int | None = None,
           progress: Callable[[int, int], None] | None = None, *,
           max_bytes: int = DEFAULT_MAX_BYTES, allow_outside: bool = False) -> IngestReport:
    """Ingest ``paths`` (folders, files, manifests) into ``index`` as batch ``batch``.

    Files are read and decoded by ``workers`` threads while the calling thread records
    finished chunks (one transaction each; ``chunk_size`` files, or by default growing
    from ``FIRST_CHUNK`` to ``MAX_CHUNK``), ``AHEAD`` chunks in flight. Cost: one read +
    decode + sha256 per new file; per chunk 3-4 indexed queries and one multi-row INSERT.
    """
    t0 = time.perf_counter()
    for name, v in (("--max-pixels", max_pixels), ("--max-bytes", max_bytes)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise CurateError(f"{name} must be a positive whole number, not {v!r}")
    report = IngestReport(batch=check_batch_name(batch))
    items = collect(paths, labels, allow_outside, report.skipped, report.conflicts)
    report.files = len(items)
    batch_id = index.get_or_create_batch(report.batch)
    empty = not index.any_images()   # no file can be settled, nothing to look up
    workers = max(1, workers)
    pool = ThreadPoolExecutor(max_workers=workers)
    done = 0
    try:
        # Pillow's warnings about odd files, silenced once for every thread (entering
        # catch_warnings per file from several threads would race on the global filters)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", module=r"PIL\.|curate\.imageio")
            flight: deque = deque()
            for chunk in _chunks(items, chunk_size):
                flight.append(_start_chunk(index, chunk, (max_pixels, max_bytes), pool, workers,
                                           look=not empty))
                if len(flight) > AHEAD:
                    done += _finish_chunk(index, flight.popleft(), batch_id, report)
                    if progress:
                        progress(done, len(items))
            while flight:
                done += _finish_chunk(index, flight.popleft(), batch_id, report)
                if progress:
                    progress(done, len(items))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    report.seconds = time.perf_counter() - t0
    return report


def _chunks(items: list, chunk_size: int | None):
    """``items`` in chunks of ``chunk_size``, or by default of ``FIRST_CHUNK`` doubling up
    to ``MAX_CHUNK``: the first commit (and progress) comes soon, and later commits are
    few. Each commit rewrites every index page its rows touched, and random sha256 keys
    touch most leaves of the sha256 indexes once they outgrow a chunk, so fixed small
    chunks make ingest's write work grow with N squared. The last chunk, recorded after
    the decoding threads ran dry, is kept to ``FIRST_CHUNK``."""
    if chunk_size:
        sizes = [chunk_size] * -(-len(items) // chunk_size)
    else:
        sizes, size, left = [], FIRST_CHUNK, len(items)
        while left > 0:
            sizes.append(min(size, left))
            left -= sizes[-1]
            size = min(2 * size, MAX_CHUNK)
        if len(sizes) > 1 and sizes[-1] > FIRST_CHUNK:
            sizes[-1:] = [sizes[-1] - FIRST_CHUNK, FIRST_CHUNK]
    i = 0
    for size in sizes:
        yield items[i:i + size]
        i += size


def _start_chunk(index, chunk, limits, pool, workers, look: bool = True):
    """Leave out what is settled (rejected files are re-checked) and hand the rest to the
    pool in slices of at most ``SLICE`` files (an interrupted ingest waits for at most
    one slice per thread)."""
    paths = [p for p, _, _ in chunk]
    settled = set()
    if look:   # (only saves work: what was recorded meanwhile is found again when recording)
        settled = index.settled_paths(paths)
    todo = [p for p in paths if p not in settled]
    step = max(1, min(SLICE, -(-len(todo) // workers)))
    slices = [todo[i:i + step] for i in range(0, len(todo), step)]
    return chunk, slices, [pool.submit(inspect_images, sl, *limits) for sl in slices]


def _finish_chunk(index, started, batch_id, report: IngestReport) -> int:
    chunk, slices, futures = started
    infos = {p: info for sl, fut in zip(slices, futures) for p, info in zip(sl, fut.result())}
    if not infos and all(lab is None for _, lab, _ in chunk):
        report.already += len(chunk)   # all settled, no labels to add: nothing to write
        return len(chunk)
    delta = index.record_images(chunk, infos, batch_id)
    for k in ("added", "duplicates", "already", "labels", "recovered"):
        setattr(report, k, getattr(report, k) + getattr(delta, k))
    report.rejected += delta.rejected
    return len(chunk)
