import numpy as np
import pytest
from PIL import Image

from helpers import write_image
from curate.imageio import inspect_image, load_image, to_8bit


@pytest.mark.parametrize("mode,fmt,suffix", [
    ("RGB", "PNG", "png"), ("L", "PNG", "png"), ("RGBA", "PNG", "png"), ("P", "PNG", "png"),
    ("CMYK", "JPEG", "jpg"), ("I;16", "TIFF", "tif"), ("1", "BMP", "bmp"), ("RGB", "WEBP", "webp"),
    ("L", "GIF", "gif"),
])
def test_every_accepted_mode_loads_as_rgb_and_l(tmp_path, mode, fmt, suffix):
    p = write_image(tmp_path / f"x.{suffix}", mode=mode, fmt=fmt)
    info = inspect_image(p)
    assert info.status == "ok", info.reason
    assert (info.width, info.height) == (16, 16)
    rgb, gray = load_image(p, 3), load_image(p, 1)
    assert rgb.mode == "RGB" and rgb.size == (16, 16)
    assert gray.mode == "L" and gray.size == (16, 16)


def test_16bit_scales_full_range_consistently():
    arr = np.array([[0, 257, 65535, 32896]], dtype=np.uint16)
    out = np.asarray(to_8bit(Image.fromarray(arr)))
    assert out.tolist() == [[0, 1, 255, 128]]


def test_rgba_composites_on_black():
    arr = np.zeros((1, 2, 4), dtype=np.uint8)
    arr[0, 0] = [200, 100, 50, 255]  # opaque
    arr[0, 1] = [200, 100, 50, 0]    # transparent
    out = np.asarray(to_8bit(Image.fromarray(arr, "RGBA")))
    assert out[0, 0].tolist() == [200, 100, 50] and out[0, 1].tolist() == [0, 0, 0]


def test_rejections(tmp_path):
    zero = tmp_path / "zero.png"
    zero.write_bytes(b"")
    text = tmp_path / "text.jpg"
    text.write_text("this is not a jpeg")
    good = write_image(tmp_path / "good.jpg", size=(64, 64), fmt="JPEG")
    trunc = tmp_path / "trunc.jpg"
    trunc.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])
    big = write_image(tmp_path / "big.png", size=(100, 100))
    assert inspect_image(zero).reason == "zero-byte file"
    assert inspect_image(text).reason.startswith("not an image")
    assert inspect_image(trunc).reason.startswith("truncated image")
    assert inspect_image(big, max_pixels=5000).reason.startswith("decompression bomb")
    assert inspect_image(tmp_path / "missing.png").reason.startswith("cannot read file")
    assert inspect_image(big).status == "ok"


def test_unsupported_mode_is_rejected(tmp_path):
    p = tmp_path / "x.tif"
    Image.new("I;16B", (4, 4)).save(p)  # big-endian 16-bit: Pillow reads it as I;16B
    info = inspect_image(p)
    # I;16B is supported; a mode outside our list must be rejected with its name
    assert info.status == "ok"
    from curate import imageio
    saved = imageio.SUPPORTED_MODES
    try:
        imageio.SUPPORTED_MODES = saved - {"I;16B"}
        info = imageio.inspect_image(p)
    finally:
        imageio.SUPPORTED_MODES = saved
    assert info.status == "rejected" and "unsupported image mode I;16B" in info.reason


def test_a_png_whose_pixels_do_not_decode_is_rejected(tmp_path):
    """Its header is fine; the compressed pixels are not. (Checking EXIF before decoding
    once swallowed the decode error, and the image was taken as ok.)"""
    good = write_image(tmp_path / "good.png", size=(40, 24)).read_bytes()
    at = good.index(b"IDAT") + 4 + 20          # inside the zlib stream
    bad = tmp_path / "bad.png"
    bad.write_bytes(good[:at] + bytes([good[at] ^ 0xFF]) + good[at + 1:])
    info = inspect_image(bad)
    assert info.status == "rejected" and info.reason.startswith("corrupt image"), info
    with pytest.raises(OSError):
        load_image(bad)


@pytest.mark.parametrize("fmt,suffix", [("TIFF", "tif"), ("JPEG", "jpg"), ("PNG", "png"), ("WEBP", "webp")])
def test_recorded_size_is_the_upright_size_load_image_gives(tmp_path, fmt, suffix):
    exif = Image.Exif()
    exif[0x0112] = 6   # rotate 90 degrees to display: 40x24 stored, 24x40 upright
    p = tmp_path / f"rot.{suffix}"
    Image.fromarray(np.zeros((24, 40, 3), np.uint8)).save(p, format=fmt, exif=exif)
    info = inspect_image(p)
    assert (info.width, info.height) == load_image(p).size == (24, 40)


def test_bytes_and_hash_match_the_file_for_the_streamed_path_too(tmp_path, monkeypatch):
    import hashlib

    from curate import imageio

    p = write_image(tmp_path / "x.png", size=(32, 32), seed=5)
    digest = hashlib.sha256(p.read_bytes()).hexdigest()
    small = inspect_image(p)
    monkeypatch.setattr(imageio, "IN_MEMORY_BYTES", 10)   # larger files are streamed
    streamed = inspect_image(p)
    assert small == streamed and small.sha256 == digest and small.bytes == p.stat().st_size
    too_big = inspect_image(p, max_bytes=p.stat().st_size - 1)
    assert too_big.reason.startswith("cannot read file: file too large")
