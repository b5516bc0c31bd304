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
