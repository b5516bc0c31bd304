"""Test helpers importable from every test module (tests/ is on pythonpath)."""

from pathlib import Path

import numpy as np
from PIL import Image


def write_image(path: Path, size=(16, 16), mode="RGB", seed=0, fmt=None) -> Path:
    """Write a real random image file."""
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    if mode in ("RGB", "RGBA", "CMYK"):
        arr = rng.integers(0, 256, (size[1], size[0], len(mode)), dtype=np.uint8)
        Image.fromarray(arr, mode).save(path, format=fmt)
    elif mode == "I;16":
        arr = rng.integers(0, 65536, (size[1], size[0]), dtype=np.uint16)
        Image.fromarray(arr).save(path, format=fmt)
    else:
        arr = rng.integers(0, 256, (size[1], size[0]), dtype=np.uint8)
        im = Image.fromarray(arr, "L")
        (im.convert(mode) if mode != "L" else im).save(path, format=fmt)
    return path
