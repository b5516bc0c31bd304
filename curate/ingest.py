"""``curate ingest``: walk folders or read manifests, validate, hash and index images.

Every file is decoded once with Pillow (:func:`curate.imageio.inspect_image`) and
hashed (sha256). Bad files are recorded as rejected with a reason; the same bytes
under a second path are one image (the extra path is recorded as a duplicate).
Work is committed in chunks, so a rerun after a crash skips what is recorded and
finishes the rest; rerunning on the same folder adds nothing.
"""

from __future__ import annotations

import hashlib
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from sqlalchemy import select

from curate.db.models import Batch, DuplicatePath, Image, Label
from curate.errors import CurateError
from curate.imageio import DEFAULT_MAX_PIXELS, EXTENSIONS, inspect_image

MANIFEST_SUFFIXES = (".csv", ".parquet", ".pq")
DEFAULT_BATCH = "default"


@dataclass
class IngestReport:
    batch: str
    files: int = 0
    added: int = 0
    duplicates: int = 0
    already: int = 0
    labels: int = 0
    rejected: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return {"batch": self.batch, "files": self.files, "added": self.added,
                "duplicates": self.duplicates, "already_indexed": self.already,
                "labels": self.labels, "rejected": len(self.rejected),
                "rejected_files": [{"path": p, "reason": r} for p, r in self.rejected],
                "seconds": round(self.seconds, 3)}


def _walk(root: Path) -> Iterator[Path]:
    """Image files under ``root`` (sorted), following symlinks but never looping."""
    seen: set[tuple[int, int]] = set()
    for d, dirs, files in os.walk(root, followlinks=True):
        try:
            st = os.stat(d)
        except OSError:
            dirs[:] = []
            continue
        if (st.st_dev, st.st_ino) in seen:
            dirs[:] = []
            continue
        seen.add((st.st_dev, st.st_ino))
        dirs.sort()
        for f in sorted(files):
            if f.lower().endswith(EXTENSIONS):
                yield Path(d) / f


def _read_manifest(path: Path) -> list[tuple[Path, str | None]]:
    import pandas as pd

    try:
        df = pd.read_parquet(path) if path.suffix != ".csv" else pd.read_csv(path, dtype=str)
    except Exception as e:  # noqa: BLE001 - any unreadable manifest is user input
        raise CurateError(f"cannot read manifest {path}: {str(e).splitlines()[0]}") from None
    if "path" not in df.columns:
        raise CurateError(f"manifest {path} has no 'path' column (columns: {', '.join(map(str, df.columns))})")
    labels = df["label"] if "label" in df.columns else [None] * len(df)
    out = []
    for p, lab in zip(df["path"], labels):
        if p is None or (isinstance(p, float)):
            continue
        q = Path(str(p)).expanduser()
        out.append((q if q.is_absolute() else path.parent / q,
                    None if lab is None or (isinstance(lab, float)) or str(lab) == "" else str(lab)))
    return out


def collect(paths: list[str | Path], labels: str | None = None) -> list[tuple[str, str | None, str]]:
    """Resolve inputs into ``(absolute path, label or None, label source)`` triples.

    A folder is walked (labels from parent folder names when ``labels='folders'``);
    a .csv/.parquet file is a manifest (path[, label]); ``labels=FILE`` maps paths to labels.
    """
    if not paths:
        raise CurateError("give at least one folder, image or manifest to ingest")
    out: list[tuple[str, str | None, str]] = []
    for given in paths:
        p = Path(given).expanduser()
        if not p.exists():
            raise CurateError(f"path not found: {given}")
        if p.is_dir():
            found = 0
            for f in _walk(p):
                lab = None
                if labels == "folders" and f.parent != p:
                    lab = f.parent.name
                out.append((os.path.abspath(f), lab, "folder"))
                found += 1
            if not found:
                raise CurateError(f"no image files ({', '.join(EXTENSIONS)}) found in {given}")
        elif p.suffix.lower() in MANIFEST_SUFFIXES:
            out += [(os.path.abspath(f), lab, "manifest") for f, lab in _read_manifest(p)]
        else:
            out.append((os.path.abspath(p), None, "folder"))
    if labels not in (None, "folders"):
        lp = Path(labels).expanduser()
        if not lp.is_file():
            raise CurateError(f"labels file not found: {labels}")
        mapping = {os.path.abspath(f): lab for f, lab in _read_manifest(lp)}
        out = [(f, mapping.get(f, lab), "manifest" if f in mapping else src) for f, lab, src in out]
    return list({f: (f, lab, src) for f, lab, src in out}.values())  # one entry per path


def _examine(path: str, max_pixels: int) -> tuple[str | None, int | None, object]:
    info = inspect_image(path, max_pixels)
    try:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        return h.hexdigest(), os.path.getsize(path), info
    except OSError:
        return None, None, info


def _upsert_label(s, image_id: int, label: str, source: str) -> bool:
    row = s.scalar(select(Label).where(Label.image_id == image_id, Label.source == source))
    if row is None:
        s.add(Label(image_id=image_id, label=label, source=source))
        return True
    if row.label != label:
        row.label = label
        return True
    return False


def ingest(index, paths: list[str | Path], batch: str | None = None, labels: str | None = None,
           max_pixels: int = DEFAULT_MAX_PIXELS, workers: int = 4, chunk_size: int = 256,
           progress: Callable[[int, int], None] | None = None) -> IngestReport:
    """Ingest ``paths`` (folders, files, manifests) into ``index`` as batch ``batch``."""
    t0 = time.perf_counter()
    items = collect(paths, labels)
    report = IngestReport(batch=batch or DEFAULT_BATCH, files=len(items))
    with index.session() as s:
        b = s.scalar(select(Batch).where(Batch.name == report.batch))
        if b is None:
            b = Batch(name=report.batch)
            s.add(b)
            s.flush()
        batch_id = b.id
    pool = ThreadPoolExecutor(max_workers=max(1, workers))
    try:
        for start in range(0, len(items), chunk_size):
            chunk = items[start:start + chunk_size]
            _ingest_chunk(index, chunk, batch_id, max_pixels, pool, report)
            if progress:
                progress(min(start + chunk_size, len(items)), len(items))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    report.seconds = time.perf_counter() - t0
    return report


def _ingest_chunk(index, chunk, batch_id, max_pixels, pool, report: IngestReport) -> None:
    paths = [p for p, _, _ in chunk]
    with index.session() as s:
        known = dict(s.execute(select(Image.path, Image.id).where(Image.path.in_(paths))).all())
        known_dups = set(s.scalars(select(DuplicatePath.path).where(DuplicatePath.path.in_(paths))))
        new = [(p, lab, src) for p, lab, src in chunk if p not in known and p not in known_dups]
        report.already += len(chunk) - len(new)
        for p, lab, src in chunk:  # labels given for images seen before still count
            if p in known and lab is not None:
                img = s.get(Image, known[p])
                if img.status == "ok" and _upsert_label(s, img.id, lab, src):
                    report.labels += 1
        results = list(pool.map(lambda it: _examine(it[0], max_pixels), new))
        shas = {sha for sha, _, info in results if sha and info.status == "ok"}
        by_sha = dict(s.execute(select(Image.sha256, Image.id).where(
            Image.sha256.in_(shas), Image.status == "ok")).all()) if shas else {}
        for (p, lab, src), (sha, size, info) in zip(new, results):
            if info.status == "ok" and sha in by_sha:
                s.add(DuplicatePath(path=p, image_id=by_sha[sha], batch_id=batch_id))
                report.duplicates += 1
                continue
            img = Image(path=p, sha256=sha, bytes=size, width=info.width, height=info.height,
                        mode=info.mode, status=info.status, reason=info.reason, batch_id=batch_id)
            s.add(img)
            if info.status != "ok":
                report.rejected.append((p, info.reason))
                continue
            s.flush()
            by_sha[sha] = img.id
            report.added += 1
            if lab is not None:
                s.add(Label(image_id=img.id, label=lab, source=src))
                report.labels += 1
