"""What produced a stored result: package versions and a UTC timestamp."""

from __future__ import annotations

import datetime as _dt
import hashlib
import platform
from importlib import metadata

_PACKAGES = ("curate", "torch", "torchvision", "numpy", "faiss-cpu", "scikit-learn",
             "lightly", "lightning", "pytorch-metric-learning", "sqlalchemy")


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
