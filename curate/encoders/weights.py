"""Pretrained weights by name: torchvision's weight enums, read from torch's hub cache.

``resolve_weights(arch, weights) -> Path | None``: ``weights`` is a local file, or one of
torchvision's weight names for ``arch`` (``DEFAULT``, ``IMAGENET1K_V1``, ...; also
``ResNet18_Weights.IMAGENET1K_V1``), resolved with
``torchvision.models.get_model_weights(arch)``. A name stands for the file torchvision
itself caches: ``torch.hub.get_dir()/checkpoints/<basename of weights.url>`` (the folder
follows ``TORCH_HOME``). A file already there is used as is; otherwise it is downloaded
once (``torch.hub.download_url_to_file``, sha256 prefix in the name checked), unless
``CURATE_OFFLINE=1``. Offline, or when the download fails, the error is one line naming
the URL, the file name and the folder to put it in.

Loading stays with the callers (``torch.load(weights_only=True)``): torchvision's own
``get_state_dict`` unpickles without that guard, so it is never used here.
Cost: a dictionary lookup and one ``stat``; a download is ~45 MB (resnet18) to ~100 MB.
"""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path
from urllib.parse import urlparse

from curate.errors import CurateError, ServiceError

OFFLINE_ENV = "CURATE_OFFLINE"
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z][A-Za-z0-9_]*)?")
_FILE_SUFFIXES = (".pth", ".pt", ".ckpt", ".bin", ".tar", ".safetensors", ".npz")
_HASH = re.compile(r"-([a-f0-9]*)\.")  # as torch.hub.HASH_REGEX


def is_weights_name(weights: str | Path) -> bool:
    """True when ``weights`` reads as a torchvision weights name rather than a file path."""
    s = str(weights)
    return bool(_NAME.fullmatch(s)) and not s.lower().endswith(_FILE_SUFFIXES)


def torchvision_weights(arch: str, name: str):
    """The ``WeightsEnum`` member ``name`` of torchvision model ``arch``; one-line errors."""
    import torchvision

    try:
        enum = torchvision.models.get_model_weights(arch)
    except (ValueError, KeyError):
        raise CurateError(f"{arch} has no torchvision weights to name: give --weights FILE "
                          f"(no file named {name!r} exists)") from None
    try:
        return enum.verify(name)
    except (KeyError, ValueError):
        names = ", ".join(enum.__members__)
        raise CurateError(f"{arch} has no torchvision weights named {name!r} and no file of that "
                          f"name exists; names: {names}") from None


def cache_path(weights) -> Path:
    """Where torchvision keeps ``weights`` (a WeightsEnum member): hub dir/checkpoints/<file>."""
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(weights.url).path)


def _offline() -> bool:
    return os.environ.get(OFFLINE_ENV, "").strip().lower() not in ("", "0", "false", "no")


def fetch(weights, arch: str, name: str, timeout: float = 30.0) -> Path:
    """The cached file of ``weights``, downloading it when missing (and allowed)."""
    import torch

    path = cache_path(weights)
    if path.is_file():
        return path
    where = (f"download {weights.url} and put it in {path.parent}/ as {path.name} "
             "(TORCH_HOME moves that folder)")
    if _offline():
        raise CurateError(f"{arch} weights {name} ({path.name}) are not in the torch hub cache "
                          f"and {OFFLINE_ENV} is set: {where}")
    path.parent.mkdir(parents=True, exist_ok=True)
    m = _HASH.search(path.name)
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout)  # urllib in torch.hub has no timeout of its own
    try:
        torch.hub.download_url_to_file(weights.url, str(path), m.group(1) if m else None,
                                       progress=True)
    except Exception as e:  # noqa: BLE001 - offline, proxy, DNS, hash mismatch: all one line
        reason = " ".join(str(e).split())[:160] or type(e).__name__
        raise ServiceError(f"cannot download {arch} weights {name} ({type(e).__name__}: {reason}); "
                           f"offline? {where}") from None
    finally:
        socket.setdefaulttimeout(old)
    return path


def resolve_weights(arch: str, weights: str | Path | None) -> Path | None:
    """A weights file for ``arch``: ``weights`` itself when it is a file, else the cached
    torchvision file of that name (see the module docstring). None stays None."""
    if weights is None or str(weights) == "":
        return None
    p = Path(weights).expanduser()
    if p.is_file():
        return p.resolve()
    if p.exists():
        raise CurateError(f"weights {weights} is not a file")
    if not is_weights_name(weights):
        raise CurateError(f"weights file not found: {weights}")
    return fetch(torchvision_weights(arch, str(weights)), arch, str(weights))


def weights_name(weights: str | Path | None) -> str | None:
    """``weights`` when it is a name (not an existing file), for the record; else None."""
    if weights is None or Path(weights).expanduser().exists() or not is_weights_name(weights):
        return None
    return str(weights)
