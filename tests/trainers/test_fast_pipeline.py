"""The fast training input path: the decoded-image cache (exact pixels, invalidation) and
batched augmentation (the same parameter distributions and pixel operations as the
per-image torchvision pipeline; seeds; identity), and the data module wiring them."""

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import stats
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from curate.data import ImageRecord
from curate.imageio import load_image
from curate.trainers.augment import ViewSpec, base_transform, preset, two_views, view_spec
from curate.trainers.batch_augment import BatchView, crop_params
from curate.trainers.cache import CachedImages, ensure_cache, is_fresh, open_cache
from curate.trainers.datamodule import ArraySource, ImageDataModule, RecordSource


def _records(folder: Path, n=6, size=(16, 16), mode="L", seed=0):
    rng = np.random.default_rng(seed)
    recs = []
    for i in range(n):
        shape = (size[1], size[0]) + ((3,) if mode == "RGB" else ())
        p = folder / f"{i}.png"
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(p)
        recs.append(ImageRecord(i + 1, str(p)))
    return recs


# ---------------------------------------------------------------- cache
def test_cache_round_trips_pixels_exactly(tmp_path):
    recs = _records(tmp_path / "g", size=(16, 16))
    path = ensure_cache(RecordSource(recs, 1), 16, tmp_path / "cache")
    cached = open_cache(path)
    assert isinstance(cached.images, np.memmap) and cached.images.dtype == np.uint8
    for i, r in enumerate(recs):  # native size: the PNG's own pixels, bit for bit
        assert np.array_equal(cached.images[i, 0], np.asarray(Image.open(r.path)))
    rgb = _records(tmp_path / "c", size=(24, 20), mode="RGB")  # not square: resize + crop
    cached = open_cache(ensure_cache(RecordSource(rgb, 3), 12, tmp_path / "cache"))
    base = base_transform(12)
    for i, r in enumerate(rgb):
        assert np.array_equal(cached.images[i], base(load_image(r.path, 3)).numpy())


def test_cache_is_rebuilt_when_an_image_changes(tmp_path):
    recs = _records(tmp_path / "g")
    src = RecordSource(recs, 1)
    path = ensure_cache(src, 16, tmp_path / "cache")
    assert is_fresh(path, recs, 16, 1) and ensure_cache(src, 16, tmp_path / "cache") == path
    new = np.full((16, 16), 7, np.uint8)
    Image.fromarray(new).save(recs[2].path)
    st = os.stat(recs[2].path)
    os.utime(recs[2].path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert not is_fresh(path, recs, 16, 1)
    assert ensure_cache(src, 16, tmp_path / "cache") == path  # same set and size: same file
    assert np.array_equal(open_cache(path).images[2, 0], new) and is_fresh(path, recs, 16, 1)
    other = ensure_cache(src, 8, tmp_path / "cache")  # another size, another set: own files
    fewer = ensure_cache(RecordSource(recs[:4], 1), 16, tmp_path / "cache")
    assert len({path, other, fewer}) == 3 and open_cache(fewer).images.shape == (4, 1, 16, 16)


def test_unreadable_images_are_left_out_and_limits_fall_back(tmp_path):
    recs = _records(tmp_path / "g")
    Path(recs[1].path).write_bytes(b"not a png")
    src = RecordSource(recs, 1)
    cached = open_cache(ensure_cache(src, 16, tmp_path / "cache"))
    assert cached.valid.tolist() == [0, 2, 3, 4, 5] and len(cached) == 5
    assert ensure_cache(src, 16, tmp_path / "small", max_bytes=100) is None
    assert not (tmp_path / "small").exists() or not list((tmp_path / "small").glob("*.npy"))


# ---------------------------------------------------------------- batched augmentation
def _reference(x, spec, p, i):
    """The per-image torchvision ops with the parameters ``p`` of sample i."""
    y = x[i]
    if spec.crop:
        t, l, h, w = p["crop"][i].tolist()
        y = TF.resized_crop(y, t, l, h, w, [spec.size, spec.size], antialias=True)
        if p["flip"][i]:
            y = TF.horizontal_flip(y)
    if p["jitter"][i]:
        f = p["factors"][i].tolist()
        fns = [TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation, TF.adjust_hue]
        for o in p["order"][i].tolist():
            if spec.jitter[o] and (o < 2 or spec.channels == 3):
                y = fns[o](y, f[o])
    if spec.channels == 3 and p["gray"][i]:
        y = TF.rgb_to_grayscale(y, 3)
    if p["blur"][i]:
        y = TF.gaussian_blur(y, [spec.blur_kernel] * 2, [float(p["sigma"][i])] * 2)
    if p["solarize"][i]:
        y = TF.solarize(y, 128)
    return y


@pytest.mark.parametrize("size,channels,kw", [
    (28, 1, {}), (32, 3, {}), (64, 3, {}), (64, 3, dict(size=32, scale=(0.1, 0.4))),
    (96, 3, dict(solarize_p=0.5)), (28, 1, dict(mild=True))])
def test_batched_views_equal_per_image_ops_for_the_same_parameters(size, channels, kw):
    spec = view_spec(preset(size, channels), **kw)
    bv = BatchView(spec)
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (48, channels, size, size), dtype=torch.uint8, generator=g)
    x[:24] = torch.nn.functional.avg_pool2d(x[:24].float(), 5, 1, 2).to(torch.uint8)  # smooth too
    p = bv.params(48, size, size, g)
    got = bv.apply(x, p) * bv.std + bv.mean  # back to 0..255
    ref = torch.stack([_reference(x, spec, p, i) for i in range(48)]).float()
    d = (got - ref).abs()
    # same ops on the uint8 grid; torch's uint8 resize rounds fixed-point weights: a grey
    # level here and there, never a different picture
    assert d.mean() < 0.05 and (d > 1.5).float().mean() < 0.01 and d.max() <= 8, (d.mean(), d.max())


def test_all_probabilities_zero_is_the_identity():
    x = torch.randint(0, 256, (8, 3, 20, 20), dtype=torch.uint8)
    for spec in (ViewSpec(20, 3, scale=(1.0, 1.0), ratio=(1.0, 1.0)), ViewSpec(20, 3, crop=False)):
        bv = BatchView(spec)
        out = bv(x)
        assert torch.equal((out * bv.std + bv.mean).round(), x.float())
        per_image = torch.stack([spec.compose()(xi) for xi in x])  # ToDtype + Normalize only
        assert torch.allclose(out, per_image, atol=1e-5)


def test_crop_distribution_matches_torchvision():
    n, scale, ratio = 3000, (0.08, 1.0), (3 / 4, 4 / 3)
    torch.manual_seed(0)
    ours = crop_params(n, 32, 32, scale, ratio).double()
    rrc = v2.RandomResizedCrop(32, scale=scale, ratio=ratio)
    tv = torch.tensor([[d["top"], d["left"], d["height"], d["width"]]
                       for d in (rrc.make_params([torch.zeros(1, 32, 32)]) for _ in range(n))]).double()
    for a in (ours, tv):
        top, left, h, w = a.unbind(1)
        assert (top >= 0).all() and (left >= 0).all() and (top + h <= 32).all() and (left + w <= 32).all()
        area = h * w / 32 ** 2  # within the range up to the rounding of w and h to pixels
        assert area.min() >= scale[0] * 0.8 and area.max() <= scale[1]
        assert (w / h).min() >= ratio[0] * 0.85 and (w / h).max() <= ratio[1] / 0.85
    for k in range(4):  # top, left, height, width: the same distributions as torchvision's
        assert stats.ks_2samp(ours[:, k], tv[:, k]).pvalue > 1e-3, k
    assert stats.ks_2samp(ours[:, 2] * ours[:, 3], tv[:, 2] * tv[:, 3]).pvalue > 1e-3


def test_random_choices_happen_at_their_rates():
    spec = view_spec(preset(64, 3))  # flip 0.5, jitter 0.8, gray 0.2, blur 0.2
    n = 4000
    p = BatchView(spec).params(n, 64, 64, torch.Generator().manual_seed(1))
    for key, rate in (("flip", 0.5), ("jitter", 0.8), ("gray", 0.2), ("blur", 0.2)):
        k = int(p[key].sum())
        sd = (n * rate * (1 - rate)) ** 0.5
        assert abs(k - n * rate) < 4 * sd, (key, k)  # binomial, 4 standard deviations
    first = np.bincount(p["order"][:, 0].numpy(), minlength=4)  # random order: uniform
    assert stats.chisquare(first).pvalue > 1e-3
    f = p["factors"].numpy()
    assert f[:, 0].min() >= 0.6 and f[:, 0].max() <= 1.4 and abs(f[:, 0].mean() - 1) < 0.02
    assert f[:, 3].min() >= -0.1 and f[:, 3].max() <= 0.1
    assert float(p["sigma"].min()) >= 0.1 and float(p["sigma"].max()) <= 2.0


def test_batched_and_per_image_views_have_the_same_distribution():
    """Independent draws: statistics of whole views agree (two-sample KS)."""
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, (16, 16), dtype=np.uint8)
    X[4:12, 4:12] = 255  # a bright square: crops, flips and jitter move the statistics
    views = two_views(16, 1)
    torch.manual_seed(0)
    per_image = torch.stack([views(Image.fromarray(X))[0] for _ in range(800)])
    base = views.base(Image.fromarray(X))[None].repeat(800, 1, 1, 1)
    batched = views.batched()(base, torch.Generator().manual_seed(0))[0]
    for f in (lambda v: v.mean((1, 2, 3)), lambda v: v.std((1, 2, 3)),
              lambda v: v[..., :8].mean((1, 2, 3)) - v[..., 8:].mean((1, 2, 3))):
        assert stats.ks_2samp(f(per_image).numpy(), f(batched).numpy()).pvalue > 1e-3


def test_two_views_differ_and_a_seed_fixes_them():
    x = torch.randint(0, 256, (16, 1, 28, 28), dtype=torch.uint8)
    bv = two_views(28, 1).batched()
    a0, a1 = bv(x, torch.Generator().manual_seed(3))
    b0, b1 = bv(x, torch.Generator().manual_seed(3))
    c0, _ = bv(x, torch.Generator().manual_seed(4))
    assert torch.equal(a0, b0) and torch.equal(a1, b1)
    assert not torch.equal(a0, a1) and not torch.equal(a0, c0)
    assert a0.shape == (16, 1, 28, 28) and a0.dtype == torch.float32


def test_views_with_negatives_or_plain_callables_stay_per_image():
    from curate.trainers import TRAINERS
    from curate.trainers.run import load_methods

    load_methods()
    neg = TRAINERS.get("dino-neg")(image_size=16, channels=1, out_dim=64, local_crops=1)
    assert neg.train_views().batched() is None
    dino = TRAINERS.get("dino")(image_size=16, channels=1, out_dim=64, local_crops=2)
    assert [v.spec.size for v in dino.train_views().batched().views] == [16, 16, 8, 8]


# ---------------------------------------------------------------- data module
def test_data_module_pipelines(tmp_path):
    X = np.random.default_rng(0).integers(0, 256, (10, 16, 16), dtype=np.uint8)
    views = two_views(16, 1)
    dm = ImageDataModule(ArraySource(X), views, batch_size=4, num_workers=0)
    assert dm.pipeline() == "batched-cache"
    x, y = next(iter(dm.train_dataloader()))
    assert x.dtype == torch.uint8 and x.shape == (4, 1, 16, 16) and y.tolist() == [-1] * 4
    v, _ = dm.on_after_batch_transfer((x, y), 0)
    assert len(v) == 2 and v[0].shape == (4, 1, 16, 16) and v[0].is_contiguous(memory_format=torch.channels_last)
    old = ImageDataModule(ArraySource(X), views, batch_size=4, num_workers=0, batched=False)
    assert old.pipeline() == "per-image"
    ov, _ = next(iter(old.train_dataloader()))
    assert isinstance(ov, list) and old.on_after_batch_transfer((ov, y), 0)[0] is ov
    recs = _records(tmp_path / "g", n=8)
    nocache = ImageDataModule(RecordSource(recs, 1), views, batch_size=4, num_workers=0)
    assert nocache.pipeline() == "batched"  # files but no cache folder: decoded per batch
    x, _ = next(iter(nocache.train_dataloader()))
    assert x.dtype == torch.uint8 and x.shape == (4, 1, 16, 16)
    cached = ImageDataModule(RecordSource(recs, 1), views, batch_size=4, num_workers=0,
                             cache_dir=tmp_path / "cache")
    cached.prepare_data()
    assert cached.pipeline() == "batched-cache" and list((tmp_path / "cache").glob("*.npy"))
    assert isinstance(cached._base_images(), CachedImages)
