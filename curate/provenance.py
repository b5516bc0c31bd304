"""What produced a stored result: package versions and a UTC timestamp."""

from __future__ import annotations

import datetime as _dt
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
