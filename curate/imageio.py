"""Validate and load images with Pillow, converting every mode consistently.

``inspect_image`` decides ok/rejected for ingest; ``load_image`` gives RGB or L
images for models. Conversions: 16/32-bit integer -> 8-bit by scaling the full
range (``I;16`` / 257), float -> clipped [0, 1] * 255, palette and LA/RGBA/PA ->
alpha-composited on black, CMYK/YCbCr/LAB/HSV -> RGB via Pillow.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError

EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")
SUPPORTED_MODES = {"1", "L", "LA", "P", "PA", "RGB", "RGBA", "RGBa", "La", "CMYK", "YCbCr",
                   "LAB", "HSV", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"}
DEFAULT_MAX_PIXELS = 178_956_970  # Pillow's own bomb limit (2x its warning level)

ImageFile.LOAD_TRUNCATED_IMAGES = False


@dataclass
class ImageInfo:
    """What ingest records about a file: ``status`` is ``ok`` or ``rejected``."""

    status: str
    width: int | None = None
    height: int | None = None
    mode: str | None = None
    reason: str | None = None


def inspect_image(path: Path | str, max_pixels: int = DEFAULT_MAX_PIXELS) -> ImageInfo:
    """Fully decode ``path`` once and report ok or the reason it is rejected.

    Cost: one full decode. Never raises for a bad file.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as e:
        return ImageInfo("rejected", reason=f"cannot read file: {e.strerror or e}")
    if size == 0:
        return ImageInfo("rejected", reason="zero-byte file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as im:
                w, h, mode = im.width, im.height, im.mode
                if w * h > max_pixels:
                    return ImageInfo("rejected", w, h, mode,
                                     f"decompression bomb: {w}x{h} exceeds {max_pixels} pixels")
                if mode not in SUPPORTED_MODES:
                    return ImageInfo("rejected", w, h, mode, f"unsupported image mode {mode}")
                im.load()
    except Image.DecompressionBombError as e:
        return ImageInfo("rejected", reason=f"decompression bomb: {e}")
    except UnidentifiedImageError:
        return ImageInfo("rejected", reason="not an image (Pillow cannot identify it)")
    except (OSError, SyntaxError, ValueError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        if "truncated" in msg.lower():
            return ImageInfo("rejected", reason=f"truncated image: {msg}")
        return ImageInfo("rejected", reason=f"corrupt image: {msg}")
    if w == 0 or h == 0:
        return ImageInfo("rejected", w, h, mode, "empty image (0 pixels)")
    return ImageInfo("ok", w, h, mode)


def to_8bit(im: Image.Image) -> Image.Image:
    """Map any supported mode to ``L`` or ``RGB`` (see the module docstring)."""
    mode = im.mode
    if mode in ("L", "RGB"):
        return im
    if mode.startswith("I"):
        a = np.asarray(im, dtype=np.float64)
        hi = 65535.0 if mode.startswith("I;16") or a.max(initial=0) > 255 else 255.0
        return Image.fromarray((np.clip(a, 0, hi) * (255.0 / hi)).round().astype(np.uint8), "L")
    if mode == "F":
        a = np.asarray(im, dtype=np.float64)
        scale = 255.0 if a.max(initial=0) <= 1.0 else 1.0
        return Image.fromarray(np.clip(a * scale, 0, 255).round().astype(np.uint8), "L")
    if mode == "1":
        return im.convert("L")
    if mode == "P":
        im = im.convert("RGBA")
        mode = "RGBA"
    if mode in ("LA", "La", "PA", "RGBA", "RGBa"):
        im = im.convert("RGBA")
        bg = Image.new("RGBA", im.size, (0, 0, 0, 255))
        out = Image.alpha_composite(bg, im).convert("RGB")
        return out.convert("L") if mode in ("LA", "La") else out
    return im.convert("RGB")


def load_image(path: Path | str, channels: int = 3) -> Image.Image:
    """Load ``path`` as an RGB (``channels=3``) or L (``channels=1``) image.

    Multi-frame files (GIF, TIFF) give their first frame. Raises OSError for a
    file that vanished or broke after ingest.
    """
    with Image.open(path) as im:
        im.seek(0)
        im.load()
        im = to_8bit(im)
    target = "RGB" if channels == 3 else "L"
    return im if im.mode == target else im.convert(target)
