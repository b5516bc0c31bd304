"""Readers for the offline benchmark datasets in ``../shared/data`` (MNIST, Fashion-MNIST,
MedMNIST npz, CIFAR-10) and sklearn's digits; used by the demo, tests and benchmarks.

All loaders return ``(images: uint8[N, H, W] or [N, H, W, 3], labels: int64[N])``.
The data folder is ``$CURATE_SHARED_DATA`` or ``shared/data`` next to the repository.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np

from curate.errors import CurateError


def shared_data_dir() -> Path | None:
    """The shared data folder, or None when this machine has none."""
    env = os.environ.get("CURATE_SHARED_DATA")
    candidates = [Path(env)] if env else []
    here = Path(__file__).resolve()
    candidates += [p / "shared" / "data" for p in here.parents]
    candidates.append(Path.cwd().parent / "shared" / "data")
    for c in candidates:
        if c.is_dir() and (c / "README.md").exists():
            return c
    return None


def _require() -> Path:
    d = shared_data_dir()
    if d is None:
        raise CurateError("shared data folder not found; set CURATE_SHARED_DATA")
    return d


def read_idx(path: Path) -> np.ndarray:
    """Read a gzipped IDX file (big-endian header, uint8 payload)."""
    with gzip.open(path, "rb") as f:
        raw = f.read()
    magic = int.from_bytes(raw[:4], "big")
    ndim = magic & 0xFF
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def _idx_pair(folder: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    d = _require() / folder
    prefix = {"train": "train", "test": "t10k"}[split]
    x = read_idx(d / f"{prefix}-images-idx3-ubyte.gz")
    y = read_idx(d / f"{prefix}-labels-idx1-ubyte.gz").astype(np.int64)
    return x, y


def load_mnist(split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    return _idx_pair("mnist", split)


def load_fashion_mnist(split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    return _idx_pair("fashion-mnist", split)


def load_medmnist(name: str, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """``name`` is ``pneumoniamnist`` or ``breastmnist``; split train|val|test."""
    with np.load(_require() / "medmnist" / f"{name}.npz") as z:
        return z[f"{split}_images"], z[f"{split}_labels"].reshape(-1).astype(np.int64)


def load_cifar10_test() -> tuple[np.ndarray, np.ndarray]:
    with np.load(_require() / "cifar10" / "cifar10_test.npz") as z:
        return z["images"], z["labels"].astype(np.int64)


def load_digits() -> tuple[np.ndarray, np.ndarray]:
    """sklearn's 8x8 digits (ships in the wheel) as uint8 images scaled to 0-255."""
    from sklearn.datasets import load_digits as _ld

    d = _ld()
    return (d.images * (255.0 / 16.0)).round().astype(np.uint8), d.target.astype(np.int64)


def write_pngs(images: np.ndarray, labels: np.ndarray, folder: Path | str,
               class_names: list[str] | None = None, upscale: int = 1) -> list[Path]:
    """Write images as PNGs in ImageFolder layout ``folder/<class>/<i>.png``."""
    from PIL import Image

    folder = Path(folder)
    paths = []
    for i, (img, lab) in enumerate(zip(images, labels)):
        name = class_names[lab] if class_names else str(int(lab))
        p = folder / name / f"{i:06d}.png"
        p.parent.mkdir(parents=True, exist_ok=True)
        im = Image.fromarray(img)
        if upscale > 1:
            im = im.resize((im.width * upscale, im.height * upscale), Image.NEAREST)
        im.save(p)
        paths.append(p)
    return paths
