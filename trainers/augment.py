"""Augmentation presets per image size/channels, multi-view makers and shifting transforms.

Every image is first brought to a square ``uint8`` tensor (C, S, S) (shorter side
resized to S, centre crop; :func:`base_transform`); augmentations then run on that
tensor (torchvision ``transforms.v2``), so shifts and crops work the same on PNG files
and on in-memory arrays. Normalisation: ImageNet mean/std for RGB, 0.5/0.5 for
grayscale. Eval transform = base + normalise (no augmentation).

Defaults by image size S (``preset(S, channels)``); grayscale images get no
saturation/hue jitter and no random-grayscale; ImageNet-style defaults only above 128 px:

| S          | global crop scale | local crops: size, scale | jitter b/c/s/h (p=0.8) | gray p | blur p | solarize p (DINO 2nd view) |
|------------|-------------------|--------------------------|------------------------|--------|--------|----------------------------|
| <= 32      | (0.5, 1.0)        | max(8, S/2), (0.2, 0.5)  | 0.4/0.4/0.4/0.1        | 0.2    | 0      | 0                          |
| 33 - 64    | (0.3, 1.0)        | S/2, (0.1, 0.4)          | 0.4/0.4/0.4/0.1        | 0.2    | 0.2    | 0                          |
| 65 - 128   | (0.2, 1.0)        | 3S/7, (0.05, 0.4)        | 0.4/0.4/0.2/0.1        | 0.2    | 0.5    | 0.2                        |
| > 128      | (0.08, 1.0);      | 3S/7 (96 at 224),        | 0.4/0.4/0.2/0.1        | 0.2    | 0.5    | 0.2                        |
|            | DINO (0.4, 1.0)   | (0.05, 0.4)              |                        |        |        |                            |

All sizes: horizontal flip p=0.5, crop aspect ratio (3/4, 4/3). Autoencoder views are
mild at every size: crop scale (0.85, 1), ratio (0.9, 1.1), flip, no colour change.

Shifting transforms (DINO negatives, thesis 003 ch. 7), on a (C, H, W) tensor:
``rot`` (exact 90/180/270 degrees, uniform), ``rot360`` (uniform angle, bilinear, black
corners), ``perm-4``/``perm-16`` (2x2 / 4x4 equal patches permuted, never the identity;
a remainder border when S is not divisible stays in place), ``pixel-shuffle`` (one
random permutation of pixel positions, the same for all channels).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from lightly.transforms.multi_view_transform import MultiViewTransform
from PIL import Image
from torchvision.transforms import v2

from curate.errors import CurateError

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
SHIFTS = ("rot", "rot360", "perm-4", "perm-16", "pixel-shuffle")


@dataclass(frozen=True)
class Preset:
    """Augmentation parameters for one image size (see the module table)."""

    image_size: int
    channels: int
    crop_scale: tuple[float, float]
    dino_crop_scale: tuple[float, float]
    local_size: int
    local_scale: tuple[float, float]
    jitter: tuple[float, float, float, float]
    gray_p: float
    blur_p: float
    solarize_p: float
    flip_p: float = 0.5


def preset(image_size: int, channels: int = 3) -> Preset:
    """The default augmentation parameters for ``image_size`` px, 1 or 3 channels."""
    s = int(image_size)
    if s <= 32:
        p = Preset(s, channels, (0.5, 1.0), (0.5, 1.0), max(8, s // 2), (0.2, 0.5),
                   (0.4, 0.4, 0.4, 0.1), 0.2, 0.0, 0.0)
    elif s <= 64:
        p = Preset(s, channels, (0.3, 1.0), (0.3, 1.0), s // 2, (0.1, 0.4),
                   (0.4, 0.4, 0.4, 0.1), 0.2, 0.2, 0.0)
    elif s <= 128:
        p = Preset(s, channels, (0.2, 1.0), (0.2, 1.0), round(3 * s / 7), (0.05, 0.4),
                   (0.4, 0.4, 0.2, 0.1), 0.2, 0.5, 0.2)
    else:
        p = Preset(s, channels, (0.08, 1.0), (0.4, 1.0), round(3 * s / 7), (0.05, 0.4),
                   (0.4, 0.4, 0.2, 0.1), 0.2, 0.5, 0.2)
    if channels == 1:  # no colour: brightness/contrast only, no random grayscale
        p = Preset(**{**p.__dict__, "jitter": (p.jitter[0], p.jitter[1], 0.0, 0.0), "gray_p": 0.0})
    return p


def normalize(channels: int) -> v2.Normalize:
    if channels == 3:
        return v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)
    return v2.Normalize((0.5,), (0.5,))


def base_transform(image_size: int) -> Callable[[Image.Image], torch.Tensor]:
    """PIL image -> uint8 tensor (C, S, S): shorter side to S, centre crop."""
    return v2.Compose([v2.PILToTensor(), v2.Resize(image_size, antialias=True),
                       v2.CenterCrop(image_size)])


def eval_transform(image_size: int, channels: int = 3) -> Callable[[Image.Image], torch.Tensor]:
    """PIL image -> normalised float tensor (C, S, S), no augmentation."""
    return v2.Compose([base_transform(image_size), v2.ToDtype(torch.float32, scale=True),
                       normalize(channels)])


@dataclass(frozen=True)
class ViewSpec:
    """One view's augmentation, applied in this order: random resized crop of the base
    image to ``size`` (area ``scale``, aspect ``ratio``; bilinear, antialiased), horizontal
    flip (``flip_p``), colour jitter b/c/s/h in random order (``jitter_p``), random
    grayscale (``gray_p``), Gaussian blur (``blur_p``, ``blur_kernel``, sigma ~ U(0.1, 2)),
    solarize at 128 (``solarize_p``), then float [0, 1] and :func:`normalize`.
    ``crop=False``: no crop and no flip (the un-augmented view at the base size).
    :meth:`compose` is the per-image torchvision pipeline; ``BatchView``
    (:mod:`curate.trainers.batch_augment`) applies the same to a whole batch."""

    size: int
    channels: int
    scale: tuple[float, float] = (1.0, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip_p: float = 0.0
    jitter: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)
    jitter_p: float = 0.0
    gray_p: float = 0.0
    blur_p: float = 0.0
    blur_kernel: int = 3
    solarize_p: float = 0.0
    crop: bool = True

    def compose(self) -> v2.Compose:
        """uint8 tensor (C, S, S) -> one augmented, normalised float view (torchvision
        ``transforms.v2``, one image at a time); the spec is kept as ``.spec``."""
        ops: list = []
        if self.crop:
            ops += [v2.RandomResizedCrop(self.size, scale=self.scale, ratio=self.ratio,
                                         antialias=True),
                    v2.RandomHorizontalFlip(self.flip_p)]
        if self.jitter_p > 0:
            ops.append(v2.RandomApply([v2.ColorJitter(*self.jitter)], p=self.jitter_p))
        if self.gray_p > 0:
            ops.append(v2.RandomGrayscale(self.gray_p))
        if self.blur_p > 0:
            ops.append(v2.RandomApply([v2.GaussianBlur(self.blur_kernel, sigma=(0.1, 2.0))],
                                      p=self.blur_p))
        if self.solarize_p > 0:
            ops.append(v2.RandomSolarize(threshold=128, p=self.solarize_p))
        ops += [v2.ToDtype(torch.float32, scale=True), normalize(self.channels)]
        out = v2.Compose(ops)
        out.spec = self
        return out


def view_spec(p: Preset, size: int | None = None, scale: tuple[float, float] | None = None,
              blur_p: float | None = None, solarize_p: float = 0.0,
              mild: bool = False) -> ViewSpec:
    """The :class:`ViewSpec` of one view under preset ``p`` (see the module table)."""
    size = size or p.image_size
    if mild:
        return ViewSpec(size, p.channels, scale=(0.85, 1.0), ratio=(0.9, 1.1), flip_p=p.flip_p)
    bp = p.blur_p if blur_p is None else blur_p
    return ViewSpec(size, p.channels, scale=scale or p.crop_scale, flip_p=p.flip_p,
                    jitter=p.jitter, jitter_p=0.8, gray_p=p.gray_p, blur_p=bp,
                    blur_kernel=3 if size <= 64 else 2 * (size // 20) + 1,
                    solarize_p=solarize_p)


def view_augment(p: Preset, size: int | None = None, scale: tuple[float, float] | None = None,
                 blur_p: float | None = None, solarize_p: float = 0.0,
                 mild: bool = False) -> v2.Compose:
    """uint8 tensor (C, S, S) -> one augmented, normalised float view (C, size, size)."""
    return view_spec(p, size, scale, blur_p, solarize_p, mild).compose()


# ---------------------------------------------------------------- shifting transforms
def _rand(n: int, generator: torch.Generator | None) -> torch.Tensor:
    return torch.randperm(n, generator=generator)


def shift_rot(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Rotate (C, H, W) by 90, 180 or 270 degrees (uniform; exact, no interpolation)."""
    k = int(torch.randint(1, 4, (1,), generator=generator))
    return torch.rot90(x, k, dims=(-2, -1))


def shift_rot360(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Rotate (C, H, W) by a uniform angle in [0, 360) (bilinear, black corners)."""
    angle = float(torch.rand(1, generator=generator)) * 360.0
    return v2.functional.rotate(x, angle, interpolation=v2.InterpolationMode.BILINEAR)


def shift_perm(x: torch.Tensor, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Cut (C, H, W) into n = g*g equal patches and permute them (never the identity)."""
    g = math.isqrt(n)
    if g * g != n or g < 2:
        raise CurateError(f"perm-n needs a square n >= 4, got {n}")
    H, W = x.shape[-2:]
    ph, pw = H // g, W // g
    if ph == 0 or pw == 0:
        raise CurateError(f"image of {H}x{W} px is too small for perm-{n}")
    perm = _rand(n, generator)
    while n > 1 and bool((perm == torch.arange(n)).all()):
        perm = _rand(n, generator)
    core = x[..., : g * ph, : g * pw]
    patches = core.reshape(*x.shape[:-2], g, ph, g, pw).transpose(-3, -2)  # (..., g, g, ph, pw)
    patches = patches.reshape(*x.shape[:-2], n, ph, pw)[..., perm, :, :]
    core = patches.reshape(*x.shape[:-2], g, g, ph, pw).transpose(-3, -2)
    out = x.clone()
    out[..., : g * ph, : g * pw] = core.reshape(*x.shape[:-2], g * ph, g * pw)
    return out


def shift_pixel_shuffle(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Permute the pixel positions of (C, H, W) at random (same permutation per channel)."""
    H, W = x.shape[-2:]
    perm = _rand(H * W, generator)
    return x.reshape(*x.shape[:-2], H * W)[..., perm].reshape(x.shape)


def get_shift(name: str) -> Callable[..., torch.Tensor]:
    """The shifting transform called ``name`` (one of :data:`SHIFTS`)."""
    if name == "rot":
        return shift_rot
    if name == "rot360":
        return shift_rot360
    if name in ("perm-4", "perm-16"):
        n = int(name.split("-")[1])
        return lambda x, generator=None: shift_perm(x, n, generator)
    if name == "pixel-shuffle":
        return shift_pixel_shuffle
    raise CurateError(f"unknown shift {name!r}; choose one of: {', '.join(SHIFTS)}")


# ---------------------------------------------------------------- view makers
class Views:
    """PIL image -> list of augmented views (float tensors), via lightly's MultiViewTransform.

    ``global_augs`` run on the base tensor; ``negatives`` (optional) is a callable
    (base tensor) -> list of negative views appended after the positive ones.
    """

    def __init__(self, image_size: int, augs: Sequence[Callable],
                 negatives: Callable[[torch.Tensor], list[torch.Tensor]] | None = None):
        self.image_size, self.augs = int(image_size), list(augs)
        self.base = base_transform(image_size)
        self.multi = MultiViewTransform(self.augs)
        self.negatives = negatives

    def batched(self):
        """The same views for whole uint8 batches of base images (a
        :class:`curate.trainers.batch_augment.BatchViews`), or None when a view has no
        :class:`ViewSpec` or there are negatives (those run one image at a time)."""
        specs = [getattr(a, "spec", None) for a in self.augs]
        if self.negatives is not None or not specs or any(s is None for s in specs):
            return None
        from curate.trainers.batch_augment import BatchViews

        return BatchViews(specs)

    def __call__(self, img: Image.Image) -> list[torch.Tensor]:
        x = self.base(img)
        views = list(self.multi(x))
        if self.negatives is not None:
            views += self.negatives(x)
        return views


def two_views(image_size: int, channels: int) -> Views:
    """SimCLR / MoCo: two views with the same random augmentation family."""
    p = preset(image_size, channels)
    return Views(image_size, [view_augment(p), view_augment(p)])


def single_mild_view(image_size: int, channels: int) -> Views:
    """Autoencoder: one mildly augmented view."""
    p = preset(image_size, channels)
    return Views(image_size, [view_augment(p, mild=True)])


def dino_augs(image_size: int, channels: int, n_global: int, n_local: int,
              local_size: int | None = None) -> tuple[list, list]:
    """(global augs, local augs) following DINO: blur 1.0/0.1 on the two globals (scaled
    by the preset's blur probability), solarize on the second global."""
    p = preset(image_size, channels)
    glob = []
    for i in range(n_global):
        bp = p.blur_p * (2.0 if i == 0 else 0.2) if p.blur_p else 0.0
        glob.append(view_augment(p, scale=p.dino_crop_scale, blur_p=min(1.0, bp),
                                 solarize_p=p.solarize_p if i == 1 else 0.0))
    loc = [view_augment(p, size=local_size or p.local_size, scale=p.local_scale)
           for _ in range(n_local)]
    return glob, loc


class NegativeViews:
    """Negative views for DINO-neg: shift R then the DINO augmentations T.

    ``source``: ``in-dist`` (R applied to the same image), ``aux`` (R applied to a
    random auxiliary image), ``combined`` (each sample picks one of the two, p = 0.5).
    ``aux`` holds a callable (index) -> uint8 base tensor and its length.
    """

    def __init__(self, shift: str, glob: list, loc: list, source: str = "in-dist",
                 aux: Callable[[int], torch.Tensor] | None = None, aux_len: int = 0):
        if source not in ("in-dist", "aux", "combined"):
            raise CurateError(f"unknown negative source {source!r}; choose in-dist, aux or combined")
        if source != "in-dist" and (aux is None or aux_len == 0):
            raise CurateError(f"--neg-source {source} needs auxiliary images (--aux PATH)")
        self.shift, self.glob, self.loc = get_shift(shift), glob, loc
        self.source, self.aux, self.aux_len = source, aux, aux_len

    def __call__(self, x: torch.Tensor) -> list[torch.Tensor]:
        use_aux = self.source == "aux" or (self.source == "combined" and bool(torch.rand(1) < 0.5))
        if use_aux:
            x = self.aux(int(torch.randint(self.aux_len, (1,))))
        x = self.shift(x)
        return [t(x) for t in self.glob] + [t(x) for t in self.loc]
