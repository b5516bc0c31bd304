"""The embedding store: ``.npy`` shards (memory-mappable) plus index rows mapping them.

An embedding set is the output of one model at one image size. Its folder is stored
relative to the workspace's data folder (``embeddings/<set>``), so a copied workspace
reads and writes its own copy; a set recorded with an absolute folder outside the
workspace is refused rather than written. Each ``embed`` run appends shards under a
per-set database lock (:func:`curate.locks.db_lock`): two processes never pick the same
shard number, and rows of images another process embedded meanwhile are not added
twice. A shard is written to a temporary name with its sha256 in ``shard-NNNNN.sha256``
and renamed before its rows are committed, so a crash never leaves rows pointing at a
partial file (an orphaned shard is overwritten by the next run). On load every shard is
checked (readable, float dtype, width, row count, checksum); a damaged one is named in
a one-line error, and ``curate embed`` re-embeds its rows (:func:`drop_damaged_shards`).

The checksum is not recomputed on every load (512 MB of shards at 1M x 128 is ~1 s of
sha256 per ``select``): once a shard's bytes matched its ``.sha256``, a ``.verified``
stamp records that sha256 with the file's size, mtime_ns, ctime_ns and inode, and a
later load whose ``stat`` gives the same values trusts it. Any write to the file (even
one keeping its size, or restoring its mtime: ctime changes) or a replaced file misses
the stamp and is hashed again. A stamp is only written for a file last changed before
the hashing began (its timestamps older than a probe file written first, on the same
file system), so a write in the same clock tick as the check cannot be missed. Bit rot
under an unchanged inode is left to ``curate embed``, whose check
(:func:`drop_damaged_shards`) always hashes.

The files are this module's; the rows, the set's lock and its count are the store's
(:mod:`curate.db.store.embeddings`), which calls back here inside its transaction.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
from pathlib import Path

import numpy as np

from curate.errors import CurateError
from curate.provenance import sha256_file

DTYPES = {"float32": np.float32, "float16": np.float16}


def safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._@-]+", "_", name)


def relative_set_path(set_name: str) -> str:
    """What ``EmbeddingSet.path`` stores for a new set: relative to the data folder."""
    return f"embeddings/{safe_name(set_name)}"


def set_folder(data_dir: Path | None, es) -> Path:
    """The folder of embedding set ``es``'s shards in the workspace whose data folder is ``data_dir``.

    Refuses an absolute folder outside ``data_dir`` (a copied workspace would otherwise
    read or overwrite the original's shards)."""
    p = Path(es.path)
    if not p.is_absolute():
        if data_dir is None:
            raise CurateError(f"embedding set {es.name}: open the index through its workspace "
                              "(its shards are stored relative to the data folder)")
        return Path(data_dir) / p
    if data_dir is not None and not p.resolve().is_relative_to(Path(data_dir).resolve()):
        raise CurateError(f"embedding set {es.name} keeps its shards in {p}, outside this "
                          f"workspace's data folder {data_dir} (a copied workspace?); use the "
                          "original workspace, or a fresh index for the copy")
    return p


def _shard_path(folder: Path, shard: int) -> Path:
    return folder / f"shard-{shard:05d}.npy"


def _write_shard(folder: Path, shard: int, X: np.ndarray) -> None:
    final = _shard_path(folder, shard)
    tmp = folder / f".shard-{shard:05d}.{os.getpid()}.tmp.npy"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        np.save(tmp, X)
        side = final.with_suffix(".sha256")
        side_tmp = folder / f".{side.name}.{os.getpid()}.tmp"
        side_tmp.write_text(sha256_file(tmp) + "\n")
        final.with_suffix(".verified").unlink(missing_ok=True)
        os.replace(side_tmp, side)
        os.replace(tmp, final)
    except OSError as e:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        why = {errno.EACCES: "permission denied", errno.EROFS: "read-only file system",
               errno.ENOSPC: "disk full", errno.EPERM: "permission denied"}.get(e.errno, e.strerror)
        raise CurateError(f"cannot write embeddings to {folder}: {why}; nothing of this shard "
                          "was recorded, rerun `curate embed` once it is writable") from None


def append_shard(index, es, image_ids: np.ndarray, X: np.ndarray,
                 folder: Path | None = None) -> int:
    """Store one shard of embedding set ``es`` (a row of ``index.embedding_set``) for
    ``image_ids`` (int64[n]) and ``X`` ((n, dim)); returns how many rows were added (images
    another process embedded meanwhile are left out). One transaction under the set's
    lock (:meth:`~curate.db.store.embeddings.EmbeddingQueries.add_embedding_rows`): the
    file is renamed into place before its rows commit. ``folder``: the set's folder
    (default: ``es.path`` when absolute). Cost: O(n dim) written plus one bulk INSERT.
    """
    if X.shape != (len(image_ids), es.dim):
        raise ValueError(f"shard shape {X.shape} != ({len(image_ids)}, {es.dim})")
    folder = Path(folder) if folder is not None else set_folder(None, es)

    def write(shard: int, keep: np.ndarray) -> None:
        _write_shard(folder, shard, np.ascontiguousarray(X[keep], dtype=DTYPES[es.dtype]))

    return index.add_embedding_rows(es.id, image_ids, write)


def open_shard(folder: Path, shard: int, es, n_rows: int, rehash: bool = False) -> np.ndarray:
    """Memory-map one shard after checking it; a one-line CurateError names a damaged one.

    ``n_rows``: how many rows the index says the shard has at least (max row + 1).
    ``rehash``: hash the file even when its ``.verified`` stamp matches (see the module
    docstring). Cost: a stat and two tiny reads when the stamp matches, else one sha256
    pass over the file (~2 ms per MB).
    """
    path = _shard_path(folder, shard)
    hint = "; rerun `curate embed` to re-embed its images"
    try:
        data = np.load(path, mmap_mode="r", allow_pickle=False)
    except FileNotFoundError:
        raise CurateError(f"embedding shard missing: {path}{hint}") from None
    except (OSError, ValueError, EOFError) as e:
        raise CurateError(f"embedding shard {path} is damaged ({str(e).splitlines()[0] if str(e) else type(e).__name__}){hint}") from None
    problem = None
    if data.dtype != DTYPES[es.dtype]:
        problem = f"dtype {data.dtype}, expected {es.dtype}"
    elif data.ndim != 2 or data.shape[1] != es.dim:
        problem = f"shape {data.shape}, expected (>= {n_rows}, {es.dim})"
    elif data.shape[0] < n_rows:
        problem = f"{data.shape[0]} rows, the index needs {n_rows}"
    elif not _checksum_ok(path, rehash):
        problem = "checksum mismatch"
    if problem:
        raise CurateError(f"embedding shard {path} is damaged ({problem}){hint}")
    return data


def _stamp_key(expected: str, st: os.stat_result) -> str:
    return f"{expected} {st.st_size} {st.st_mtime_ns} {st.st_ctime_ns} {st.st_ino}\n"


def _checksum_ok(path: Path, rehash: bool) -> bool:
    """Whether ``path`` matches its ``.sha256`` (True without one: older sets). Trusts a
    matching ``.verified`` stamp unless ``rehash``; after a successful hash writes one
    when the file's timestamps predate the hashing (best effort: a read-only folder
    just hashes every time)."""
    side = path.with_suffix(".sha256")
    try:
        expected = side.read_text().strip()
    except FileNotFoundError:
        return True
    stamp = path.with_suffix(".verified")
    if not rehash:
        with contextlib.suppress(OSError):
            if stamp.read_text() == _stamp_key(expected, os.stat(path)):
                return True
    probe = path.parent / f".{stamp.name}.{os.getpid()}.tmp"
    try:
        probe.write_text("")
        began = probe.stat().st_mtime_ns     # the file system's clock before the stat
    except OSError:
        probe, began = None, None
    st = os.stat(path)
    if sha256_file(path) != expected:
        with contextlib.suppress(OSError):
            stamp.unlink(missing_ok=True)
            if probe is not None:
                probe.unlink(missing_ok=True)
        return False
    if probe is not None:
        with contextlib.suppress(OSError):
            if max(st.st_mtime_ns, st.st_ctime_ns) < began:
                probe.write_text(_stamp_key(expected, st))
                os.replace(probe, stamp)
            else:   # changed in the tick the check began: hash again next time
                probe.unlink(missing_ok=True)
    return True


def drop_damaged_shards(index, es, folder: Path) -> list[str]:
    """Find damaged shards of ``es``; delete their rows (their images get re-embedded) and
    move each file aside to ``*.damaged``. Returns one description per damaged shard.
    Cost: every shard is checked (read and hashed, whatever its ``.verified`` stamp) once."""
    def check(shard: int, n_rows: int) -> str | None:
        try:
            open_shard(folder, shard, es, n_rows, rehash=True)
            return None
        except CurateError as e:
            problem = str(e).split("; rerun")[0]
        path = _shard_path(folder, shard)
        if path.exists():
            os.replace(path, path.with_name(path.name + ".damaged"))
        path.with_suffix(".sha256").unlink(missing_ok=True)
        path.with_suffix(".verified").unlink(missing_ok=True)
        return problem

    return index.drop_damaged_shards(es.id, check)


def load_embeddings(index, set_name: str | None = None, batch: str | None = None,
                    image_ids=None, dtype=np.float32) -> tuple[np.ndarray, np.ndarray]:
    """Load an embedding set as ``(image_ids int64[N], X dtype[N, D])``, ordered by image id.

    Only images currently ``ok`` are returned; ``batch`` restricts to one ingest
    batch, ``image_ids`` to a subset. Shards are checked (:func:`open_shard`),
    memory-mapped and gathered once: X is written once, straight from the mapped shard
    (a slice copy where a shard's rows are one consecutive run, as embed writes them,
    else a take), never through a temporary. Cost: the row map
    (:meth:`~curate.db.store.embeddings.EmbeddingQueries.embedding_rows`, ~1 s at 1M)
    plus one pass over N x D (~0.2-0.5 s for 512 MB from the page cache).
    """
    es = index.embedding_set(set_name)
    rows = index.embedding_rows(es.id, batch)
    folder = set_folder(getattr(index, "data_dir", None), es)
    if image_ids is not None:
        rows = rows[np.isin(rows[:, 0], np.asarray(image_ids, dtype=np.int64))]
    X = np.empty((len(rows), es.dim), dtype=dtype)
    for shard in np.unique(rows[:, 1]):
        at = np.flatnonzero(rows[:, 1] == shard)
        want = rows[at, 2]
        data = open_shard(folder, int(shard), es, int(want.max()) + 1)
        _gather(data, want, X, at)
    return rows[:, 0].copy(), X


def _gather(data: np.ndarray, want: np.ndarray, X: np.ndarray, at: np.ndarray) -> None:
    """``X[at] = data[want]`` without a temporary when ``at`` is one consecutive run
    (``want`` too: a slice copy; else ``np.take`` into the run)."""
    lo, n = int(at[0]), len(at)
    if int(at[-1]) - lo + 1 != n:   # scattered (subsets, interleaved embeds): general path
        X[at] = data[want]
        return
    out = X[lo:lo + n]
    w0 = int(want[0])
    if int(want[-1]) - w0 + 1 == n and (n < 2 or bool((np.diff(want) == 1).all())):
        out[...] = data[w0:w0 + n]
    elif data.dtype == X.dtype:   # mode "clip": unbuffered; open_shard checked the bounds
        np.take(data, want, axis=0, out=out, mode="clip")
    else:
        out[...] = data[want]
