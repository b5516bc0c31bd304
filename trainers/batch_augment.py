"""Batched view augmentation: a :class:`~curate.trainers.augment.ViewSpec` applied to a
whole batch of base images at once, with per-sample random parameters.

``BatchView(spec)(x)``: uint8 (B, C, S, S) base images (any device) -> float (B, C,
size, size) normalised views. ``BatchViews(specs)(x)`` -> one such tensor per view. This
is what the per-image pipeline (``spec.compose()``, torchvision ``transforms.v2``) does,
one sample at a time, with the same parameter distributions:

* crop: torchvision's ``RandomResizedCrop`` sampler per sample (10 tries of area ~
  U(scale) x S^2 and log-aspect ~ U(log ratio), w/h rounded, top/left uniform; centre-crop
  fallback), then bilinear antialiased resampling as ``torch.nn.functional.interpolate``
  (``antialias=True``) computes it, written as two per-sample weight matrices
  ``out = W_h X W_w^T`` (the flip reverses W_w's rows);
* flip, jitter (applied with ``jitter_p``; factors ~ U, a random order of the four
  adjustments per sample), grayscale, blur (sigma ~ U(0.1, 2), reflect padding),
  solarize: Bernoulli per sample, the torchvision kernels' formulas;
* pixels stay on the uint8 grid between steps (values 0..255 held in float32, truncated
  or rounded where the uint8 kernels truncate or round), so a view equals the per-image
  one for the same parameters up to 1-2 grey levels (rounding inside the uint8 resize).

Random parameters come from ``generator`` (CPU; the global RNG when None), so a seed
fixes the views. Cost per view: two small batched matmuls (B C size S (S + size)
multiply-adds) plus a few elementwise passes; on CPU ~1/10 of the per-image pipeline.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torchvision.transforms.v2.functional._color import _hsv_to_rgb, _rgb_to_hsv

from curate.trainers.augment import IMAGENET_MEAN, IMAGENET_STD, ViewSpec


def _u(n: int, lo: float, hi: float, g: torch.Generator | None, *shape: int) -> torch.Tensor:
    """U(lo, hi) float32 of shape (n, *shape), as ``torch.empty(1).uniform_(lo, hi)``."""
    return torch.rand(n, *shape, generator=g) * (hi - lo) + lo


def crop_params(n: int, height: int, width: int, scale: Sequence[float], ratio: Sequence[float],
                g: torch.Generator | None = None) -> torch.Tensor:
    """int64 (n, 4) ``(top, left, h, w)``: torchvision ``RandomResizedCrop.make_params``
    for n samples at once."""
    area = height * width
    target = area * _u(n, scale[0], scale[1], g, 10).double()
    aspect = torch.exp(_u(n, math.log(ratio[0]), math.log(ratio[1]), g, 10)).double()
    w = torch.round(torch.sqrt(target * aspect)).long()
    h = torch.round(torch.sqrt(target / aspect)).long()
    ok = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = ok.long().argmax(1, keepdim=True)  # the first try that fits
    w, h = w.gather(1, first)[:, 0], h.gather(1, first)[:, 0]
    top = (torch.rand(n, generator=g).double() * (height - h + 1)).floor().long()
    left = (torch.rand(n, generator=g).double() * (width - w + 1)).floor().long()
    miss = ~ok.any(1)
    if miss.any():  # torchvision's fallback: a centre crop within the ratio range
        in_ratio = width / height
        if in_ratio < min(ratio):
            fw, fh = width, int(round(width / min(ratio)))
        elif in_ratio > max(ratio):
            fw, fh = int(round(height * max(ratio))), height
        else:
            fw, fh = width, height
        w[miss], h[miss] = fw, fh
        top[miss], left[miss] = (height - fh) // 2, (width - fw) // 2
    return torch.stack([top, left, h, w], 1)


def resize_weights(start: torch.Tensor, length: torch.Tensor, in_size: int, out_size: int,
                   device=None) -> torch.Tensor:
    """float32 (n, out_size, in_size): row i holds the bilinear antialias weights of
    output pixel i over the input pixels ``start .. start + length - 1`` (PyTorch's
    ``_compute_weights_aa``: triangle filter widened by the downscale factor,
    truncated to the crop and renormalised)."""
    start = start.to(device, torch.float64)[:, None, None]
    length = length.to(device, torch.float64)[:, None, None]
    scale = length / out_size
    support = torch.clamp(scale, min=1.0)
    invscale = 1.0 / support
    center = scale * (torch.arange(out_size, device=device, dtype=torch.float64)[None, :, None] + 0.5)
    lo = torch.clamp(torch.floor(center - support + 0.5), min=0.0)
    hi = torch.minimum(torch.floor(center + support + 0.5), length)
    j = torch.arange(in_size, device=device, dtype=torch.float64)[None, None, :] - start
    w = torch.clamp(1.0 - ((j - center + 0.5) * invscale).abs(), min=0.0) * ((j >= lo) & (j < hi))
    return (w / w.sum(-1, keepdim=True).clamp(min=1e-12)).float()


def _gray(x: torch.Tensor) -> torch.Tensor:
    """(n, 3, H, W) uint8-valued -> (n, 1, H, W) ITU-R 601 luma (float, not floored)."""
    return x[:, 0:1] * 0.2989 + x[:, 1:2] * 0.587 + x[:, 2:3] * 0.114


def _blend(x: torch.Tensor, other: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """torchvision ``_blend`` on uint8 values: f x + (1 - f) other, clamped, truncated."""
    f = f.view(-1, 1, 1, 1)
    return (x * f + other * (1.0 - f)).clamp_(0, 255).trunc_()


def _brightness(x, f):
    return (x * f.view(-1, 1, 1, 1)).clamp_(0, 255).trunc_()


def _contrast(x, f):
    g = _gray(x).floor_() if x.shape[1] == 3 else x
    return _blend(x, g.mean(dim=(1, 2, 3), keepdim=True), f)


def _saturation(x, f):
    return _blend(x, _gray(x).floor_(), f)


def _hue(x, f):
    hsv = _rgb_to_hsv(x / 255.0)
    h = (hsv[:, 0] + f.view(-1, 1, 1)).remainder(1.0)
    rgb = _hsv_to_rgb(torch.stack([h, hsv[:, 1], hsv[:, 2]], 1))
    return (rgb * (256.0 - 1e-3)).trunc_()


def _blur(x: torch.Tensor, sigma: torch.Tensor, k: int) -> torch.Tensor:
    """Gaussian blur per sample (kernel ``k``, sigma (n,)), reflect padding, rounded."""
    n, c, H, W = x.shape
    lim = (k - 1) / (2.0 * math.sqrt(2.0))
    t = torch.linspace(-lim, lim, k, device=x.device)
    k1 = torch.softmax(-(t[None, :] / sigma.to(x.device)[:, None]) ** 2, dim=1)  # (n, k)
    k2 = (k1[:, :, None] * k1[:, None, :]).repeat_interleave(c, 0)[:, None]  # (n c, 1, k, k)
    y = F.pad(x.reshape(1, n * c, H, W), [k // 2] * 4, mode="reflect")
    return F.conv2d(y, k2, groups=n * c).reshape(n, c, H, W).round_()


class BatchView:
    """One view of :class:`ViewSpec` ``spec`` over uint8 batches (module docstring)."""

    def __init__(self, spec: ViewSpec, channels_last: bool = False):
        self.spec, self.channels_last = spec, channels_last
        b, c, s, h = spec.jitter
        self.ranges = [(max(0.0, 1 - b), 1 + b) if b else None, (max(0.0, 1 - c), 1 + c) if c else None,
                       (max(0.0, 1 - s), 1 + s) if s and spec.channels == 3 else None,
                       (-h, h) if h and spec.channels == 3 else None]
        mean, std = ((IMAGENET_MEAN, IMAGENET_STD) if spec.channels == 3 else ((0.5,), (0.5,)))
        self.mean = torch.tensor(mean).view(1, -1, 1, 1) * 255.0
        self.std = torch.tensor(std).view(1, -1, 1, 1) * 255.0

    def params(self, n: int, height: int, width: int,
               g: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Random parameters for n samples (CPU tensors): ``crop`` (n, 4) top/left/h/w,
        ``flip``, ``jitter`` (applied), ``order`` (n, 4) permutations of brightness,
        contrast, saturation, hue, ``factors`` (n, 4), ``gray``, ``blur``, ``sigma``,
        ``solarize``."""
        s = self.spec
        p: dict[str, torch.Tensor] = {}
        if s.crop:
            p["crop"] = crop_params(n, height, width, s.scale, s.ratio, g)
            p["flip"] = torch.rand(n, generator=g) < s.flip_p
        p["jitter"] = torch.rand(n, generator=g) < s.jitter_p
        p["order"] = torch.rand(n, 4, generator=g).argsort(1)
        p["factors"] = torch.stack([_u(n, *r, g) if r else torch.ones(n) for r in self.ranges], 1)
        p["gray"] = torch.rand(n, generator=g) < s.gray_p
        p["blur"] = torch.rand(n, generator=g) < s.blur_p
        p["sigma"] = _u(n, 0.1, 2.0, g)
        p["solarize"] = torch.rand(n, generator=g) < s.solarize_p
        return p

    def apply(self, x: torch.Tensor, p: dict[str, torch.Tensor]) -> torch.Tensor:
        """uint8 (B, C, H, W) + :meth:`params` -> normalised float (B, C, size, size)."""
        s, dev = self.spec, x.device
        x = x.float()
        if s.crop:
            top, left, h, w = p["crop"].unbind(1)
            wh = resize_weights(top, h, x.shape[-2], s.size, dev)
            ww = resize_weights(left, w, x.shape[-1], s.size, dev)
            flip = p["flip"].to(dev)
            ww = torch.where(flip[:, None, None], ww.flip(1), ww)
            x = (x @ ww.transpose(1, 2)[:, None]).add_(0.5).floor_()  # rows first, as the
            x = (wh[:, None] @ x).add_(0.5).floor_()                   # uint8 kernel rounds
        ops = (_brightness, _contrast, _saturation, _hue)
        jit, order, fac = p["jitter"].to(dev), p["order"].to(dev), p["factors"].to(dev)
        for k in range(4):  # position k of each sample's random order
            for o, fn in enumerate(ops):
                m = jit & (order[:, k] == o)
                if self.ranges[o] is not None and bool(m.any()):
                    x[m] = fn(x[m], fac[m, o])
        m = p["gray"].to(dev)
        if s.channels == 3 and bool(m.any()):
            x[m] = _gray(x[m]).trunc_().expand(-1, 3, -1, -1)
        m = p["blur"].to(dev)
        if bool(m.any()):
            x[m] = _blur(x[m], p["sigma"][p["blur"]], s.blur_kernel)
        m = p["solarize"].to(dev)
        if bool(m.any()):
            x[m] = torch.where(x[m] >= 128, 255.0 - x[m], x[m])
        x = (x - self.mean.to(dev)) / self.std.to(dev)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.apply(x, self.params(len(x), x.shape[-2], x.shape[-1], generator))


class BatchViews:
    """uint8 (B, C, S, S) -> list of views, one per spec (what ``Views`` gives per image)."""

    def __init__(self, specs: Sequence[ViewSpec], channels_last: bool = False):
        self.specs = list(specs)
        self.views = [BatchView(s, channels_last) for s in self.specs]

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> list[torch.Tensor]:
        return [v(x, generator) for v in self.views]
