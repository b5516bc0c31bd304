"""``curate ingest``: walk folders or read manifests, validate, hash and index images.

Every file is read once (:func:`curate.imageio.inspect_image`: only regular files,
bounded size, supported formats only): hashed (sha256) and fully decoded. Bad files
are recorded as rejected with a reason and looked at again on every rerun; the same
bytes under a second path are one image (the extra path is recorded as a duplicate).
The database holds that rule (a unique index on sha256 among ok images), so
concurrent ingests cannot store one image twice: a chunk that lost a race is
retried against what the other process committed. Work is committed in chunks, so
a rerun after a crash skips what is recorded and finishes the rest.

What is read is limited to the given roots: a symlink leaving the folder it was
found in, or a manifest path outside the manifest's folder, is skipped (and
reported) unless ``allow_outside``.
"""

from __future__ import annotations

import os
import random
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from sqlalchemy import insert, select
from sqlalchemy.exc import DataError, IntegrityError, OperationalError

from curate.db.models import Batch, DuplicatePath, Image, Label
from curate.errors import CurateError
from curate.imageio import DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS, EXTENSIONS, inspect_image

MANIFEST_SUFFIXES = (".csv", ".parquet", ".pq")
DEFAULT_BATCH = "default"
NAME_LIMIT = Batch.__table__.c.name.type.length      # 255 on SQLite and PostgreSQL alike
LABEL_LIMIT = Label.__table__.c.label.type.length
RETRIES = 10
_TRANSIENT = ("deadlock detected", "database is locked", "database table is locked",
              "could not serialize")


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
    if len(name) > NAME_LIMIT:
        raise CurateError(f"batch name is {len(name)} characters; the limit is {NAME_LIMIT}")
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise CurateError("batch name must not contain control characters")
    return name


def _inside(real: str, root: str) -> bool:
    return real == root or real.startswith(root.rstrip(os.sep) + os.sep)


def _walk(root: Path, allow_outside: bool, skipped: list) -> Iterator[Path]:
    """Image files under ``root`` (sorted). Symlinks are followed only while they stay
    inside ``root`` (any with ``allow_outside``); loops are never entered twice."""
    real_root = os.path.realpath(root)

    def leaves(full: str) -> bool:
        if allow_outside or not os.path.islink(full) or _inside(os.path.realpath(full), real_root):
            return False
        skipped.append((os.path.abspath(full), f"symlink leaves {root} (--allow-outside to follow)"))
        return True

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
        dirs[:] = [x for x in sorted(dirs) if not leaves(os.path.join(d, x))]
        for f in sorted(files):
            if f.lower().endswith(EXTENSIONS) and not leaves(os.path.join(d, f)):
                yield Path(d) / f


def _text(v) -> str | None:
    return None if v is None or isinstance(v, float) or str(v) == "" else str(v)


def _read_manifest(path: Path) -> list[tuple[Path, str | None]]:
    """``(path, label)`` rows; relative paths are relative to the manifest's folder."""
    import pandas as pd

    try:
        df = pd.read_parquet(path) if path.suffix != ".csv" else pd.read_csv(path, dtype=str)
    except Exception as e:  # noqa: BLE001 - any unreadable manifest is user input
        raise CurateError(f"cannot read manifest {path}: {str(e).splitlines()[0]}") from None
    if "path" not in df.columns:
        raise CurateError(f"manifest {path} has no 'path' column (columns: {', '.join(map(str, df.columns))})")
    labels = df["label"] if "label" in df.columns else [None] * len(df)
    out = []
    for row, (p, lab) in enumerate(zip(df["path"], labels), start=1):
        p, lab = _text(p), _text(lab)
        if p is None:
            continue
        if "\x00" in p or (lab and "\x00" in lab):
            raise CurateError(f"manifest {path} data row {row}: contains a NUL byte")
        if lab and len(lab) > LABEL_LIMIT:
            raise CurateError(f"manifest {path} data row {row}: label is {len(lab)} characters; "
                              f"the limit is {LABEL_LIMIT}")
        q = Path(p).expanduser()
        out.append((q if q.is_absolute() else path.parent / q, lab))
    if not out:
        raise CurateError(f"manifest {path} lists no paths (header only or empty 'path' column)")
    return out


def _merge_labels(rows, conflicts: list) -> dict[str, str | None]:
    """path -> label over manifest rows; a path given two different labels gets none
    and is reported in ``conflicts`` (no row silently wins)."""
    seen: dict[str, set[str]] = {}
    for f, lab in rows:
        seen.setdefault(os.path.abspath(f), set())
        if lab is not None:
            seen[os.path.abspath(f)].add(lab)
    for f, labs in seen.items():
        if len(labs) > 1:
            conflicts.append((f, sorted(labs)))
    return {f: next(iter(labs)) if len(labs) == 1 else None for f, labs in seen.items()}


def collect(paths: list[str | Path], labels: str | None = None, allow_outside: bool = False,
            skipped: list | None = None, conflicts: list | None = None
            ) -> list[tuple[str, str | None, str]]:
    """Resolve inputs into ``(absolute path, label or None, label source)`` triples.

    A folder is walked (labels from parent folder names when ``labels='folders'``);
    a .csv/.parquet file is a manifest (path[, label]); ``labels=FILE`` maps paths to
    labels. Paths not read (escaping symlinks or manifest rows) go to ``skipped``;
    paths given conflicting labels go to ``conflicts`` and get no label.
    """
    if not paths:
        raise CurateError("give at least one folder, image or manifest to ingest")
    skipped = [] if skipped is None else skipped
    conflicts = [] if conflicts is None else conflicts
    out: list[tuple[str, str | None, str]] = []
    for given in paths:
        p = Path(given).expanduser()
        if not p.exists():
            raise CurateError(f"path not found: {given}")
        if p.is_dir():
            found, before = 0, len(skipped)
            for f in _walk(p, allow_outside, skipped):
                lab = f.parent.name if labels == "folders" and f.parent != p else None
                out.append((os.path.abspath(f), lab, "folder"))
                found += 1
            if not found and len(skipped) == before:
                raise CurateError(f"no image files ({', '.join(EXTENSIONS)}) found in {given}")
        elif p.suffix.lower() in MANIFEST_SUFFIXES:
            root = os.path.realpath(p.parent)
            rows = []
            for f, lab in _read_manifest(p):
                if allow_outside or _inside(os.path.realpath(f), root):
                    rows.append((f, lab))
                else:
                    skipped.append((os.path.abspath(f), f"outside the manifest's folder {p.parent} "
                                                        "(--allow-outside to read it)"))
            out += [(f, lab, "manifest") for f, lab in _merge_labels(rows, conflicts).items()]
        else:
            out.append((os.path.abspath(p), None, "folder"))
    if labels not in (None, "folders"):
        lp = Path(labels).expanduser()
        if not lp.is_file():
            raise CurateError(f"labels file not found: {labels}")
        mapping = _merge_labels(_read_manifest(lp), conflicts)
        out = [(f, mapping[f], "manifest") if f in mapping else (f, lab, src) for f, lab, src in out]
    for f, lab, _ in out:
        if lab is not None and len(lab) > LABEL_LIMIT:
            raise CurateError(f"label of {f} is {len(lab)} characters; the limit is {LABEL_LIMIT}")
    if not out:
        first = f" (first: {skipped[0][0]}: {skipped[0][1]})" if skipped else ""
        raise CurateError(f"nothing to ingest: {len(skipped)} paths skipped{first}")
    return list({f: (f, lab, src) for f, lab, src in out}.values())  # one entry per path


def _upsert_label(s, image_id: int, label: str, source: str) -> bool:
    row = s.scalar(select(Label).where(Label.image_id == image_id, Label.source == source))
    if row is None:
        s.add(Label(image_id=image_id, label=label, source=source))
        return True
    if row.label != label:
        row.label = label
        return True
    return False


def _write_error(index, e: Exception) -> CurateError:
    first = str(getattr(e, "orig", None) or e).strip().splitlines()[0]
    return CurateError(f"cannot write to the index database {index.url}: {first}; "
                       "free disk space (or fix the cause) and rerun: what was committed is kept")


def _retrying(index, work: Callable):
    """Run ``work(session)`` in a transaction; a transaction that lost a race with a
    concurrent writer (unique violation, deadlock, lock timeout) is rolled back and run
    again on what the other process committed. Other database failures (disk full, ...)
    become one-line errors."""
    for attempt in range(RETRIES):
        try:
            with index.session() as s:
                return work(s)
        except IntegrityError:
            pass
        except OperationalError as e:
            if not any(t in str(e.orig or e).lower() for t in _TRANSIENT):
                raise _write_error(index, e) from None
        except DataError as e:
            raise _write_error(index, e) from None
        time.sleep(random.uniform(0.01, 0.05) * (attempt + 1))
    raise CurateError(f"lost {RETRIES} races in a row with other writers to {index.url}; "
                      "rerun to finish (what was committed is kept)")


def ingest(index, paths: list[str | Path], batch: str | None = None, labels: str | None = None,
           max_pixels: int = DEFAULT_MAX_PIXELS, workers: int = 4, chunk_size: int = 256,
           progress: Callable[[int, int], None] | None = None, *,
           max_bytes: int = DEFAULT_MAX_BYTES, allow_outside: bool = False) -> IngestReport:
    """Ingest ``paths`` (folders, files, manifests) into ``index`` as batch ``batch``."""
    t0 = time.perf_counter()
    for name, v in (("--max-pixels", max_pixels), ("--max-bytes", max_bytes)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise CurateError(f"{name} must be a positive whole number, not {v!r}")
    report = IngestReport(batch=check_batch_name(batch))
    items = collect(paths, labels, allow_outside, report.skipped, report.conflicts)
    report.files = len(items)
    batch_id = _retrying(index, lambda s: _batch_id(s, report.batch))
    pool = ThreadPoolExecutor(max_workers=max(1, workers))
    try:
        for start in range(0, len(items), chunk_size):
            chunk = items[start:start + chunk_size]
            _ingest_chunk(index, chunk, batch_id, (max_pixels, max_bytes), pool, report)
            if progress:
                progress(min(start + chunk_size, len(items)), len(items))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    report.seconds = time.perf_counter() - t0
    return report


def _batch_id(s, name: str) -> int:
    b = s.scalar(select(Batch).where(Batch.name == name))
    if b is None:
        b = Batch(name=name)
        s.add(b)
        s.flush()
    return b.id


def _ingest_chunk(index, chunk, batch_id, limits, pool, report: IngestReport) -> None:
    paths = [p for p, _, _ in chunk]
    with index.session() as s:  # what is settled needs no reading; rejected files are re-checked
        done = set(s.scalars(select(Image.path).where(Image.path.in_(paths), Image.status != "rejected")))
        done |= set(s.scalars(select(DuplicatePath.path).where(DuplicatePath.path.in_(paths))))
    todo = [p for p in paths if p not in done]
    infos = dict(zip(todo, pool.map(lambda p: inspect_image(p, *limits), todo)))
    delta = _retrying(index, lambda s: _record(s, chunk, infos, batch_id, IngestReport(report.batch)))
    for k in ("added", "duplicates", "already", "labels", "recovered"):
        setattr(report, k, getattr(report, k) + getattr(delta, k))
    report.rejected += delta.rejected


def _record(s, chunk, infos, batch_id, d: IngestReport) -> IngestReport:
    """Record one chunk in session ``s`` (all or nothing; rerun from scratch on a lost race)."""
    paths = [p for p, _, _ in chunk]
    wanted = set(paths)
    rows = {p: (i, st) for p, i, st in s.execute(
        select(Image.path, Image.id, Image.status).where(Image.path.in_(paths)))}
    dups = set(s.scalars(select(DuplicatePath.path).where(DuplicatePath.path.in_(paths))))
    shas = {i.sha256 for i in infos.values() if i.status == "ok"}
    owners = s.execute(select(Image.sha256, Image.id, Image.path).where(
        Image.sha256.in_(shas), Image.status == "ok")).all() if shas else []
    by_sha = {sha: i for sha, i, _ in owners}
    # read after ``rows``: a path another process stored in between is its own sha's owner
    rows.update({p: (i, "ok") for _, i, p in owners if p in wanted})
    order = sorted(range(len(chunk)), key=lambda k: (getattr(infos.get(chunk[k][0]), "sha256", "") or "", k))
    # new images go in with one multi-row INSERT ... RETURNING at the end, in this sha256
    # order; an ORM flush per image was most of ingest's time
    new: list[dict] = []
    new_ids: dict[str, int] = {}
    pending: set[str] = set()      # sha256 of ok images in ``new``
    labelled: list[tuple[str, str, str, Image | None]] = []
    for p, lab, src in (chunk[k] for k in order):  # by sha256: concurrent writers lock in one order
        row, info = rows.get(p), infos.get(p)
        if p in dups or (row and row[1] != "rejected") or info is None:
            d.already += 1   # labels given for images seen before still count
            if row and row[1] == "ok" and lab is not None and _upsert_label(s, row[0], lab, src):
                d.labels += 1
            continue
        img = s.get(Image, row[0]) if row else None
        if info.status == "ok" and info.sha256 in pending:   # a copy within this chunk
            _insert_images(s, new, new_ids, by_sha)
            pending.clear()
        if info.status == "ok" and info.sha256 in by_sha:
            if row is None:
                s.add(DuplicatePath(path=p, image_id=by_sha[info.sha256], batch_id=batch_id))
            else:  # a rejected record, readable now: keep the row (nothing recorded is lost)
                img.status, img.sha256, img.reason = "duplicate", info.sha256, f"same bytes as image {by_sha[info.sha256]}"
            d.duplicates += 1
            continue
        fields = dict(sha256=info.sha256, bytes=info.bytes, width=info.width, height=info.height,
                      mode=info.mode, status=info.status, reason=info.reason)
        if img is None:
            new.append({"path": p, "batch_id": batch_id, **fields})
        else:
            for k, v in fields.items():
                setattr(img, k, v)
        if info.status != "ok":
            d.rejected.append((p, info.reason))
            continue
        if img is None:
            pending.add(info.sha256)
        d.added += 1
        d.recovered += row is not None
        if lab is not None:
            labelled.append((p, lab, src, img))
    s.flush()
    _insert_images(s, new, new_ids, by_sha)
    for p, lab, src, img in labelled:
        if img is None:   # a new image has no label yet
            s.add(Label(image_id=new_ids[p], label=lab, source=src))
            d.labels += 1
        elif _upsert_label(s, img.id, lab, src):
            d.labels += 1
    return d


def _insert_images(s, new: list[dict], new_ids: dict[str, int], by_sha: dict[str, int]) -> None:
    """INSERT the rows of ``new`` (one executemany, in their order); read back their ids by
    path (unique). RETURNING with ordered rows would run one statement per row on SQLite."""
    if not new:
        return
    s.execute(insert(Image), new)
    ids = dict(s.execute(select(Image.path, Image.id).where(
        Image.path.in_([r["path"] for r in new]))).all())
    for r in new:
        new_ids[r["path"]] = ids[r["path"]]
        if r["status"] == "ok":
            by_sha[r["sha256"]] = ids[r["path"]]
    new.clear()
