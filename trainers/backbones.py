"""Backbones for the trainers: image batch (B, C, H, W) -> features (B, D).

``build_backbone(name, channels, image_size, weights=None) -> (module, feature_dim)``

| name        | D    | min size | notes                                                    |
|-------------|------|----------|----------------------------------------------------------|
| small-cnn   | 256  | 8 px     | 4 conv-BN-ReLU stages (32-64-128-256), default <= 64 px   |
| resnet18    | 512  | 16 px    | torchvision; <= 64 px: 3x3 stride-1 stem, no max-pool    |
| resnet50    | 2048 | 16 px    | same stem rule as resnet18                                |
| vit-s       | 384  | 16 px    | ViT-S (12 layers, 6 heads, 384-d), patch 4 (<= 64 px),    |
|             |      |          | 8 (<= 128 px) or 16; torchvision VisionTransformer;       |
|             |      |          | inputs of another size are resized to the built size     |

The default (``default_backbone(image_size)``) is ``small-cnn`` up to 64 px and
``resnet18`` above. Weights: a local file (a torchvision state dict, a checkpoint
holding ``state_dict``/``model``, or a curate checkpoint whose keys start with
``backbone.``) or, for resnet18/resnet50, a torchvision weights name (``DEFAULT``,
``IMAGENET1K_V1``; :mod:`curate.encoders.weights`); a 3-channel first convolution is
summed to 1 channel for grayscale. Cost per image: small-cnn at 32 px ~ 40 MFLOPs; resnet18 with the small
stem at 32 px ~ 0.56 GFLOPs; resnet50 ~ 1.3 GFLOPs; vit-s/4 at 32 px ~ 1.4 GFLOPs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch
import torchvision
from torch import nn

from curate.errors import CurateError

# name -> (builder(channels, image_size) -> (module, dim), minimum image size)
BACKBONES: dict[str, tuple[Callable[[int, int], tuple[nn.Module, int]], int]] = {}


def _register(name: str, min_size: int):
    def deco(fn):
        BACKBONES[name] = (fn, min_size)
        return fn
    return deco


def backbone_names() -> list[str]:
    return sorted(BACKBONES)


def default_backbone(image_size: int) -> str:
    """``small-cnn`` for images up to 64 px, ``resnet18`` above."""
    return "small-cnn" if image_size <= 64 else "resnet18"


class SmallCNN(nn.Module):
    """Four conv stages (two 3x3 conv-BN-ReLU each but the first), halving the size
    after stages 1-3 (while > 1 px), then global average pooling -> (B, 256)."""

    def __init__(self, channels: int = 3, widths: tuple[int, ...] = (32, 64, 128, 256)):
        super().__init__()
        layers: list[nn.Module] = []
        c_in = channels
        for i, w in enumerate(widths):
            n_conv = 1 if i == 0 else 2
            for j in range(n_conv):
                layers += [nn.Conv2d(c_in if j == 0 else w, w, 3, padding=1, bias=False),
                           nn.BatchNorm2d(w), nn.ReLU(inplace=True)]
            c_in = w
            if i < len(widths) - 1:
                layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dim = widths[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.features(x)).flatten(1)


@_register("small-cnn", 8)
def _small_cnn(channels: int, image_size: int):
    net = SmallCNN(channels)
    return net, net.dim


def _resnet(arch: str, dim: int):
    def build(channels: int, image_size: int):
        net = getattr(torchvision.models, arch)(weights=None)
        if image_size <= 64:
            net.conv1 = nn.Conv2d(channels, 64, 3, stride=1, padding=1, bias=False)
            net.maxpool = nn.Identity()
        elif channels != 3:
            net.conv1 = nn.Conv2d(channels, 64, 7, stride=2, padding=3, bias=False)
        net.fc = nn.Identity()
        return net, dim
    return build


_register("resnet18", 16)(_resnet("resnet18", 512))
_register("resnet50", 16)(_resnet("resnet50", 2048))


class ViTBackbone(nn.Module):
    """torchvision VisionTransformer without its head: the class token (B, hidden)."""

    def __init__(self, channels: int, image_size: int, patch: int, hidden: int = 384,
                 layers: int = 12, heads: int = 6):
        super().__init__()
        from torchvision.models.vision_transformer import VisionTransformer

        self.vit = VisionTransformer(image_size=image_size, patch_size=patch, num_layers=layers,
                                     num_heads=heads, hidden_dim=hidden, mlp_dim=4 * hidden)
        if channels != 3:
            self.vit.conv_proj = nn.Conv2d(channels, hidden, patch, stride=patch)
        self.vit.heads = nn.Identity()
        self.dim, self.size = hidden, image_size

    def forward(self, x):
        if x.shape[-1] != self.size or x.shape[-2] != self.size:  # e.g. DINO local crops
            x = nn.functional.interpolate(x, size=(self.size, self.size), mode="bilinear",
                                          align_corners=False)
        return self.vit(x)


@_register("vit-s", 16)
def _vit_s(channels: int, image_size: int):
    patch = 4 if image_size <= 64 else 8 if image_size <= 128 else 16
    if image_size % patch:
        raise CurateError(f"vit-s needs an image size divisible by its patch size {patch}, "
                          f"got {image_size}")
    net = ViTBackbone(channels, image_size, patch)
    return net, net.dim


def _read_weights(weights: Path) -> dict[str, torch.Tensor]:
    from curate.encoders.torchvision_backbones import load_state_dict

    state = load_state_dict(Path(weights))
    state = {k.removeprefix("module."): v for k, v in state.items()}
    for prefix in ("teacher_backbone.", "backbone.", "encoder."):
        if any(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
            break
    return state


def load_backbone_weights(net: nn.Module, weights: Path | str) -> None:
    """Load a local weights file into ``net`` (head tensors ignored, missing -> error)."""
    state = _read_weights(Path(weights))
    own = net.state_dict()
    fixed = {}
    for k, v in state.items():
        if k not in own:
            continue
        if v.shape != own[k].shape and v.ndim == 4 and own[k].ndim == 4 \
                and v.shape[1] == 3 and own[k].shape[1] == 1 and v.shape[2:] == own[k].shape[2:]:
            v = v.sum(1, keepdim=True)  # RGB first conv -> grayscale
        if v.shape != own[k].shape:
            raise CurateError(f"weights file {weights} does not fit: {k} has shape "
                              f"{tuple(v.shape)}, the backbone needs {tuple(own[k].shape)} "
                              "(other image size, channels or architecture?)")
        fixed[k] = v
    missing = [k for k in own if k not in fixed and not k.endswith("num_batches_tracked")]
    if missing:
        raise CurateError(f"weights file {weights} does not fit the backbone: {len(missing)} "
                          f"missing tensors, e.g. {missing[0]}")
    net.load_state_dict(fixed, strict=False)


def build_backbone(name: str, channels: int = 3, image_size: int = 32,
                   weights: Path | str | None = None) -> tuple[nn.Module, int]:
    """Build backbone ``name`` for ``channels`` (1 or 3) x ``image_size`` px inputs.

    Returns ``(module, feature_dim)``; the module maps float (B, C, S, S) -> (B, D).
    Raises CurateError for an unknown name, a bad channel count, an image size below
    the backbone's minimum or weights that do not fit.
    """
    if name not in BACKBONES:
        raise CurateError(f"unknown backbone {name!r}; choose one of: {', '.join(backbone_names())}")
    if channels not in (1, 3):
        raise CurateError(f"channels must be 1 or 3, got {channels}")
    build, min_size = BACKBONES[name]
    if image_size is None or int(image_size) < min_size:
        raise CurateError(f"image size {image_size} is too small for backbone {name} "
                          f"(minimum {min_size} px)")
    net, dim = build(channels, int(image_size))
    if weights is not None:
        from curate.encoders.weights import resolve_weights

        load_backbone_weights(net, resolve_weights(name, weights))
    return net, dim
