"""Validate and load images with Pillow, converting every mode consistently.

``inspect_image`` decides ok/rejected for ingest; ``load_image`` gives RGB or L
images for models. Conversions: 16/32-bit integer -> 8-bit by scaling the full
range (``I;16`` / 257), float -> clipped [0, 1] * 255, palette and LA/RGBA/PA ->
alpha-composited on black, CMYK/YCbCr/LAB/HSV -> RGB via Pillow.

Safety: only regular files are read (a FIFO or ``/dev/zero`` is rejected, never read),
files larger than ``max_bytes`` are rejected before decoding, and Pillow may only use
the decoders in ``FORMATS`` (so a PostScript file named ``.jpg`` never starts
Ghostscript). EXIF orientation is applied (``ImageOps.exif_transpose``): the size
ingest records and the pixels ``load_image`` returns are both upright.

Cost of ``inspect_image``: a file up to ``IN_MEMORY_BYTES`` is read with one ``read``
into a buffer that is both hashed and decoded (Pillow parses it from memory); a larger
one is hashed in 1 MiB pieces, then decoded from the file, so memory stays bounded.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")
SUPPORTED_MODES = {"1", "L", "LA", "P", "PA", "RGB", "RGBA", "RGBa", "La", "CMYK", "YCbCr",
                   "LAB", "HSV", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"}
# Pillow decoders curate may use: the formats behind EXTENSIONS (JPEG covers MPO too)
FORMATS = ("JPEG", "PNG", "BMP", "GIF", "TIFF", "WEBP")
DEFAULT_MAX_PIXELS = 178_956_970  # Pillow's own bomb limit (2x its warning level)
DEFAULT_MAX_BYTES = 1 << 30       # larger files are rejected unread (1 GiB)
_ROTATED = {5, 6, 7, 8}           # EXIF orientations that swap width and height
_PNG_ORIENTATION = {"exif", "xmp", "XML:com.adobe.xmp", "Raw profile type exif"}
IN_MEMORY_BYTES = 64 << 20        # files up to this size are read in one call, larger ones streamed

ImageFile.LOAD_TRUNCATED_IMAGES = False


@dataclass
class ImageInfo:
    """What ingest records about a file: ``status`` is ``ok`` or ``rejected``."""

    status: str
    width: int | None = None
    height: int | None = None
    mode: str | None = None
    reason: str | None = None
    sha256: str | None = None   # of the bytes read (None when the file could not be read)
    bytes: int | None = None


def open_regular(path: Path | str, max_bytes: int = DEFAULT_MAX_BYTES):
    """Open ``path`` for binary reading if it is a regular file of at most ``max_bytes``.

    Never blocks (a FIFO is opened non-blocking and refused); raises OSError with a
    short message otherwise.
    """
    return _open_regular(path, max_bytes)[0]


def _open_regular(path: Path | str, max_bytes: int):
    """``(binary file, size from fstat)``; see :func:`open_regular`."""
    fd, size = _open_fd(path, max_bytes)
    try:
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb"), size
    except BaseException:
        os.close(fd)
        raise


def _open_fd(path: Path | str, max_bytes: int) -> tuple[int, int]:
    """A raw descriptor of a regular file of at most ``max_bytes`` (non-blocking open, so a
    FIFO never blocks; O_NONBLOCK means nothing for a regular file's reads) and its size."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(f"not a regular file ({_kind(st.st_mode)})")
        if st.st_size > max_bytes:
            raise OSError(f"file too large: {st.st_size} bytes exceeds {max_bytes}")
        return fd, st.st_size
    except BaseException:
        os.close(fd)
        raise


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "FIFO"), (stat.S_ISCHR, "character device"),
                       (stat.S_ISBLK, "block device"), (stat.S_ISSOCK, "socket"),
                       (stat.S_ISDIR, "folder")):
        if test(mode):
            return name
    return "special file"


def _oriented_size(im: Image.Image, decoded: bool = True) -> tuple[int, int]:
    """Width and height after EXIF (or XMP) orientation, as ``ImageOps.exif_transpose``
    applies it. A PNG holds orientation only in chunks Pillow keeps in ``info`` (all of
    them once decoded). Before ``load`` (``decoded=False``) a PNG without an eXIf chunk
    ahead of its pixels reports its stored size: Pillow's ``getexif`` would decode the
    whole image to look further, which a size check must not do."""
    if im.format == "PNG" and ("exif" not in im.info if not decoded
                               else not _PNG_ORIENTATION.intersection(im.info)):
        return im.width, im.height
    try:
        rotated = im.getexif().get(0x0112) in _ROTATED
    except Exception:  # noqa: BLE001 - a broken EXIF block leaves the size as stored
        rotated = False
    return (im.height, im.width) if rotated else (im.width, im.height)


def inspect_image(path: Path | str, max_pixels: int = DEFAULT_MAX_PIXELS,
                  max_bytes: int = DEFAULT_MAX_BYTES) -> ImageInfo:
    """Read ``path`` once: hash its bytes and decode it fully, reporting ok or the reason
    it is rejected. Width and height are after EXIF orientation. Pillow's warnings about
    the file (EXIF, bomb warning) are silenced.

    Cost: one read plus one full decode. Never raises for a bad file.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _inspect(path, max_pixels, max_bytes)


def inspect_images(paths: list[str], max_pixels: int = DEFAULT_MAX_PIXELS,
                   max_bytes: int = DEFAULT_MAX_BYTES) -> list[ImageInfo]:
    """:func:`inspect_image` of each path, for a worker thread: Pillow's warnings are left
    to the caller, since ``warnings.catch_warnings`` is not thread-safe (ingest silences
    them once, around its thread pool)."""
    return [_inspect(p, max_pixels, max_bytes) for p in paths]


def _inspect(path, max_pixels: int, max_bytes: int) -> ImageInfo:
    try:
        fd, size = _open_fd(path, max_bytes)
    except (OSError, ValueError) as e:  # ValueError: a NUL byte in the path
        return ImageInfo("rejected", reason=f"cannot read file: {e.strerror or e}")
    try:
        data = _read_small(fd, size) if size <= IN_MEMORY_BYTES else None
        if data is not None:  # the usual case: one read; hash and decode the same buffer
            info = _decode(io.BytesIO(data), max_pixels, len(data))
            info.sha256, info.bytes = hashlib.sha256(data).hexdigest(), len(data)
            return info
        os.lseek(fd, 0, os.SEEK_SET)   # large, or grew since fstat: stream it, bounded
        h, size = hashlib.sha256(), 0
        with os.fdopen(os.dup(fd), "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
                size += len(chunk)
                if size > max_bytes:
                    return ImageInfo("rejected", reason=f"file too large: exceeds {max_bytes} bytes")
            f.seek(0)
            info = _decode(f, max_pixels, size)
    except OSError as e:
        return ImageInfo("rejected", reason=f"cannot read file: {e.strerror or e}")
    finally:
        os.close(fd)
    info.sha256, info.bytes = h.hexdigest(), size
    return info


def _read_small(fd: int, size: int) -> bytes | None:
    """All bytes of a file whose fstat size is ``size``; None when it turned out longer."""
    parts, n = [], 0
    while n <= size:
        b = os.read(fd, size + 1 - n)
        if not b:
            break
        parts.append(b)
        n += len(b)
    if n > size:
        return None
    return parts[0] if len(parts) == 1 else b"".join(parts)


def _decode(f, max_pixels: int, size: int) -> ImageInfo:
    """Open with the allowed decoders, check pixels and mode from the header, then decode
    every pixel (``load``). The pixel count needs no orientation (a rotation keeps it)."""
    if size == 0:
        return ImageInfo("rejected", reason="zero-byte file")
    try:
        with Image.open(f, formats=FORMATS) as im:
            mode = im.mode
            if im.width * im.height > max_pixels:
                w, h = _oriented_size(im, decoded=False)
                return ImageInfo("rejected", w, h, mode,
                                 f"decompression bomb: {w}x{h} exceeds {max_pixels} pixels")
            if mode not in SUPPORTED_MODES:
                w, h = _oriented_size(im, decoded=False)
                return ImageInfo("rejected", w, h, mode, f"unsupported image mode {mode}")
            im.load()
            w, h = _oriented_size(im)
    except Image.DecompressionBombError as e:
        return ImageInfo("rejected", reason=f"decompression bomb: {e}")
    except UnidentifiedImageError:
        return ImageInfo("rejected", reason="not an image in a supported format "
                                            f"({', '.join(FORMATS)}; Pillow cannot identify it as one)")
    except (OSError, SyntaxError, ValueError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        if "truncated" in msg.lower():
            return ImageInfo("rejected", reason=f"truncated image: {msg}")
        return ImageInfo("rejected", reason=f"corrupt image: {msg}")
    except Exception as e:  # noqa: BLE001 - decoders raise anything on hostile bytes
        return ImageInfo("rejected", reason=f"corrupt image: {type(e).__name__}: {str(e)[:200]}")
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

    Multi-frame files (GIF, TIFF) give their first frame; EXIF orientation is applied.
    Raises OSError for a file that vanished, broke or stopped being a regular file
    (or a supported format) after ingest.
    """
    with open_regular(path) as f, Image.open(f, formats=FORMATS) as im:
        im.seek(0)
        im.load()
        im = to_8bit(ImageOps.exif_transpose(im))
    target = "RGB" if channels == 3 else "L"
    return im if im.mode == target else im.convert(target)
