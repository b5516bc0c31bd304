"""What produced a stored result: package versions, a UTC timestamp, file and id-set hashes.

Id-set hashes. Every ``*_ids_sha256`` a record stores (scorer calibration, batch
checks, simulations, training runs and their held-out split) is :func:`ids_hash`:
sha256 over the sorted ids as little-endian int64 bytes, 64 hex digits. Records
written since this definition carry ``"ids_hash_version": 2`` (:func:`add_ids_hashes`
writes both). Older records have no marker and one of two earlier definitions,
told apart by length, so a workspace from before opens and still compares:

- version 1 (16 hex; scorers, batch checks, simulations, ``train_ids_hash`` /
  ``holdout_ids_hash`` of a split): the first 16 hex of the same digest, so it
  compares with version 2 by prefix;
- version 0 (64 hex without the marker; a training run's ``ids_sha256`` /
  ``holdout_ids_sha256``): sha256 of the sorted ids as decimal text joined by commas;
  it can be checked against ids (:func:`matches_ids`) but not compared with another
  definition's hash (:func:`same_ids` says None).

No stored value is rewritten (no migration): old and new are told apart on read.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import platform
from importlib import metadata
from typing import Iterable

import numpy as np

from curate.errors import CurateError

_PACKAGES = ("curate", "torch", "torchvision", "numpy", "faiss-cpu", "scikit-learn",
             "lightly", "lightning", "pytorch-metric-learning", "sqlalchemy")

#: the definition of :func:`ids_hash` (stored next to the hashes it wrote)
IDS_HASH_VERSION = 2
IDS_HASH_KEY = "ids_hash_version"


def versions() -> dict[str, str]:
    """Installed versions of the packages that shape our numbers."""
    out = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def utcnow() -> _dt.datetime:
    return _dt.datetime.now(_dt.timezone.utc).replace(tzinfo=None)


def sha256_file(path) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# ------------------------------------------------------------------ id-set hashes
def ids_hash(ids: Iterable[int]) -> str:
    """sha256 (64 hex) of the sorted ids as little-endian int64 bytes; order and the
    input's integer type do not matter. Cost O(n log n)."""
    a = ids if isinstance(ids, np.ndarray) else np.fromiter(ids, np.int64)
    a = np.sort(a.astype("<i8", copy=False).ravel())
    return hashlib.sha256(a.tobytes()).hexdigest()


def add_ids_hashes(record: dict, **ids_by_key) -> dict:
    """Store ``record[key] = ids_hash(ids)`` for each keyword and the definition's marker
    (``ids_hash_version``); returns ``record``. How every ``*_ids_sha256`` is written."""
    for key, ids in ids_by_key.items():
        record[key] = ids_hash(ids)
    record[IDS_HASH_KEY] = IDS_HASH_VERSION
    return record


def ids_hash_version(record: dict, key: str) -> int:
    """The definition ``record[key]`` was written with: the record's marker, else 1 for
    a 16-hex value and 0 for a 64-hex one (module doc)."""
    if IDS_HASH_KEY in record:
        return int(record[IDS_HASH_KEY])
    value = record.get(key)
    if not isinstance(value, str) or len(value) not in (16, 64):
        raise CurateError(f"stored id hash {key}={value!r} has no known format")
    return 1 if len(value) == 16 else 0


def _decimal_hash(ids) -> str:  # version 0: reading old training runs only
    return hashlib.sha256(",".join(map(str, sorted(int(i) for i in ids))).encode()).hexdigest()


def matches_ids(ids, record: dict, key: str) -> bool:
    """Whether the stored ``record[key]`` is the hash of ``ids`` by the definition it
    was written with (any version); False when the key is missing."""
    if record.get(key) is None:
        return False
    version, value = ids_hash_version(record, key), record[key]
    if version == 0:
        return _decimal_hash(ids) == value
    if version not in (1, IDS_HASH_VERSION):
        raise CurateError(f"stored id hash {key} has version {version}, newer than this curate")
    return ids_hash(ids)[:len(value)] == value


def same_ids(a: dict, key_a: str, b: dict, key_b: str) -> bool | None:
    """Whether two stored hashes name the same id set: True/False when their definitions
    compare (versions 1 and 2, by the shorter's prefix; equal versions), None when they
    do not (version 0 against 1 or 2, or a hash missing) -- never a silent False."""
    x, y = a.get(key_a), b.get(key_b)
    if x is None or y is None:
        return None
    va, vb = ids_hash_version(a, key_a), ids_hash_version(b, key_b)
    if va == vb:
        return x == y
    if 0 in (va, vb):
        return None
    n = min(len(x), len(y))
    return x[:n] == y[:n]


def read_split(split: dict | None, owner: str) -> tuple[np.ndarray, np.ndarray]:
    """(trained ids, held-out ids) int64 of a training run's held-out split: the file
    ``split["path"]`` (``train_ids``, ``holdout_ids``; written by
    ``curate.trainers.datamodule.ImageDataModule.save_split``) checked against the hashes
    recorded with it (any version). One-line CurateError naming ``owner`` otherwise."""
    if not split or not split.get("path"):
        raise CurateError(f"{owner} recorded no held-out split (trained before "
                          "--holdout-fraction existed); retrain it")
    try:
        with np.load(split["path"]) as z:
            train, hold = z["train_ids"].astype(np.int64), z["holdout_ids"].astype(np.int64)
    except (OSError, KeyError, ValueError):
        raise CurateError(f"split file of {owner} is missing or unreadable: {split['path']}") from None
    keys = (("train_ids_sha256", "holdout_ids_sha256") if IDS_HASH_KEY in split
            else ("train_ids_hash", "holdout_ids_hash"))  # version 1 splits
    if not (matches_ids(train, split, keys[0]) and matches_ids(hold, split, keys[1])):
        raise CurateError(f"split file {split['path']} does not match {owner}'s record")
    return train, hold


__all__ = ["versions", "utcnow", "sha256_file", "ids_hash", "add_ids_hashes", "ids_hash_version",
           "matches_ids", "same_ids", "read_split", "IDS_HASH_VERSION", "IDS_HASH_KEY"]
