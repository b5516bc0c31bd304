"""torchvision backbones (resnet18/50, densenet121, resnext50_32x4d) with pretrained weights.

The classifier head is replaced by identity, so the output is the pooled
penultimate feature (512 for resnet18, 2048 for resnet50/resnext50, 1024 for
densenet121). Weights: a local ``.pth`` file (a torchvision state dict or a checkpoint
holding ``state_dict``/``model``) or a torchvision weights name (``DEFAULT``,
``IMAGENET1K_V1``; resolved to torch's hub cache by :mod:`curate.encoders.weights`,
downloaded once when missing). Files always load with ``torch.load(weights_only=True)``.
Cost: one forward pass per image (resnet18 at 224 px: ~1.8 GFLOPs).
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
import torchvision
from torchvision.transforms import v2

from curate.encoders.base import ENCODERS, TorchEncoder
from curate.encoders.weights import resolve_weights
from curate.errors import CurateError

_DIMS = {"resnet18": 512, "resnet50": 2048, "densenet121": 1024, "resnext50_32x4d": 2048}
_MEAN, _STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _strip_head(net: torch.nn.Module) -> torch.nn.Module:
    if hasattr(net, "fc"):
        net.fc = torch.nn.Identity()
    else:
        net.classifier = torch.nn.Identity()
    return net


# torchvision's published densenet files use old key names ("...denselayer1.norm.1.weight");
# torchvision renames them on load (densenet._load_state_dict), so do we
_DENSENET_OLD_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$")


def _densenet_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for k, v in state.items():
        m = _DENSENET_OLD_KEY.match(k)
        out[m.group(1) + m.group(2) if m else k] = v
    return out


def load_state_dict(weights: Path) -> dict[str, torch.Tensor]:
    """Read a state dict from a local file, with one-line errors for bad files."""
    if not Path(weights).is_file():
        raise CurateError(f"weights file not found: {weights}")
    try:
        obj = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file is the user's input
        raise CurateError(f"cannot read weights file {weights}: {str(e).splitlines()[0]}") from None
    for key in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CurateError(f"weights file {weights} holds no state dict")
    return obj


class TorchvisionEncoder(TorchEncoder):
    def __init__(self, arch: str, weights: Path | None, image_size: int | None = None):
        if weights is None:
            raise CurateError(f"encoder {arch} needs --weights: a torchvision name (DEFAULT, "
                              "IMAGENET1K_V1) or a local .pth file; or use --encoder pixels-pca")
        weights = resolve_weights(arch, weights)
        self.name, self.image_size, self.dim = arch, image_size or 224, _DIMS[arch]
        self.net = _strip_head(getattr(torchvision.models, arch)(weights=None))
        state = {k.removeprefix("module."): v for k, v in load_state_dict(weights).items()}
        if arch.startswith("densenet"):
            state = _densenet_keys(state)
        missing, _unexpected = self.net.load_state_dict(
            {k: v for k, v in state.items() if not k.startswith(("fc.", "classifier."))},
            strict=False)
        if missing:
            raise CurateError(f"weights file {weights} does not fit {arch}: {len(missing)} missing "
                              f"tensors, e.g. {missing[0]}")
        self.net.eval()
        self._tf = v2.Compose([v2.PILToTensor(), v2.Resize(self.image_size, antialias=True),
                               v2.CenterCrop(self.image_size), v2.ToDtype(torch.float32, scale=True),
                               v2.Normalize(_MEAN, _STD)])


for _arch in _DIMS:
    ENCODERS.register(_arch)(
        lambda weights=None, image_size=None, _a=_arch, **_: TorchvisionEncoder(_a, weights, image_size))
