"""Augmentation presets, view makers and the shifting transforms of DINO negatives."""

import math

import numpy as np
import pytest
import torch
from PIL import Image

from curate.errors import CurateError
from curate.trainers.augment import (SHIFTS, NegativeViews, dino_augs, eval_transform, get_shift,
                                     preset, shift_perm, shift_pixel_shuffle, shift_rot, two_views)


def _img(seed=0, c=3, s=16):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (c, s, s), generator=g, dtype=torch.uint8)


def _multiset(x):
    return sorted(map(tuple, x.reshape(x.shape[0], -1).T.tolist()))


def test_rot_is_an_exact_quarter_rotation():
    x = _img()
    seen = set()
    for seed in range(40):
        y = shift_rot(x, torch.Generator().manual_seed(seed))
        k = [k for k in (1, 2, 3) if torch.equal(y, torch.rot90(x, k, dims=(-2, -1)))]
        assert len(k) == 1
        seen.add(k[0])
    assert seen == {1, 2, 3}


@pytest.mark.parametrize("n", [4, 16])
def test_perm_permutes_equal_patches_and_keeps_pixels(n):
    x = _img(1, s=16)
    g = math.isqrt(n)
    p = 16 // g
    patches = {x[:, i * p:(i + 1) * p, j * p:(j + 1) * p].numpy().tobytes() for i in range(g) for j in range(g)}
    for seed in range(5):
        y = shift_perm(x, n, torch.Generator().manual_seed(seed))
        assert not torch.equal(y, x)
        got = [y[:, i * p:(i + 1) * p, j * p:(j + 1) * p].numpy().tobytes() for i in range(g) for j in range(g)]
        assert set(got) == patches and len(got) == n
        assert _multiset(y) == _multiset(x)


def test_perm_keeps_the_border_when_not_divisible():
    x = _img(2, s=17)
    y = shift_perm(x, 4, torch.Generator().manual_seed(0))
    assert torch.equal(y[:, 16:, :], x[:, 16:, :]) and torch.equal(y[:, :, 16:], x[:, :, 16:])
    assert _multiset(y) == _multiset(x)


def test_pixel_shuffle_keeps_the_pixel_multiset():
    x = _img(3)
    y = shift_pixel_shuffle(x, torch.Generator().manual_seed(0))
    assert not torch.equal(x, y) and _multiset(y) == _multiset(x)


@pytest.mark.parametrize("name", SHIFTS)
def test_every_shift_keeps_shape_and_dtype(name):
    x = _img(4, c=1)
    y = get_shift(name)(x)
    assert y.shape == x.shape and y.dtype == x.dtype


def test_unknown_shift():
    with pytest.raises(CurateError, match="unknown shift"):
        get_shift("flip")


def test_presets_get_gentler_for_small_and_gray_images():
    small, big = preset(28, 1), preset(224, 3)
    assert small.crop_scale[0] > big.crop_scale[0] and small.blur_p == 0
    assert small.jitter[2:] == (0.0, 0.0) and small.gray_p == 0
    assert big.dino_crop_scale == (0.4, 1.0) and big.local_size == 96


def test_views_shapes_and_eval_transform():
    im = Image.fromarray(np.random.default_rng(0).integers(0, 255, (20, 24), dtype=np.uint8))
    v = two_views(16, 1)(im)
    assert len(v) == 2 and all(t.shape == (1, 16, 16) and t.dtype == torch.float32 for t in v)
    glob, loc = dino_augs(32, 1, 2, 3)
    x = _img(0, c=1, s=32)
    assert [t(x).shape[-1] for t in glob + loc] == [32, 32, 16, 16, 16]
    assert eval_transform(16, 1)(im).shape == (1, 16, 16)


def test_negative_views_need_aux_for_aux_source():
    glob, loc = dino_augs(16, 1, 1, 1)
    with pytest.raises(CurateError, match="aux"):
        NegativeViews("rot", glob, loc, "aux")
    aux = lambda i: torch.zeros(1, 16, 16, dtype=torch.uint8)  # noqa: E731
    out = NegativeViews("rot", glob, loc, "aux", aux, 3)(_img(0, c=1))
    assert len(out) == 2
