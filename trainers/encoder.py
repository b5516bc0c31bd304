"""The ``trained`` encoder: a backbone trained by ``curate train``, usable by ``curate embed``.

A finished run exports ``encoder.pt`` (:func:`export_encoder`): the scoring backbone's
state dict (teacher for DINO, query encoder for MoCo, encoder for the autoencoder;
never a projection head) plus what rebuilds it (method, backbone name, channels,
image size, feature dim). The file is self-describing; the ``Model`` row's params
repeat these fields. ``encode`` returns the L2-normalised backbone features
(``normalize=False`` for raw ones), float32 (B, dim); the transform is the training
eval transform (shorter side to S, centre crop, normalise). Cost: one backbone forward.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from curate.encoders.base import ENCODERS, TorchEncoder
from curate.errors import CurateError
from curate.trainers.augment import eval_transform
from curate.trainers.backbones import build_backbone

FORMAT = "curate-encoder-1"


def atomic_torch_save(obj: Any, path: Path | str) -> None:
    """``torch.save`` to a temporary file in the same folder, fsync, then rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def export_encoder(module, path: Path | str) -> dict[str, Any]:
    """Write the module's scoring backbone to ``path``; returns the Model params."""
    h = module.hparams
    net = module.scoring_backbone()
    meta = {"format": FORMAT, "method": module.method, "backbone": h.backbone,
            "channels": int(h.channels), "image_size": int(h.image_size),
            "dim": int(module.feature_dim)}
    state = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
    extra = module.export_extra()  # heads (curate.trainers.heads): in the file, params in the row
    atomic_torch_save({**meta, **extra.get("file", {}), "state_dict": state}, path)
    return {**{k: v for k, v in meta.items() if k != "format"}, **extra.get("params", {})}


def read_encoder_file(path: Path | str) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise CurateError(f"trained encoder file not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - a broken file is the user's input
        raise CurateError(f"cannot read trained encoder {path}: {str(e).splitlines()[0]}") from None
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise CurateError(f"{path} is not a curate trained-encoder file")
    return obj


class TrainedEncoder(TorchEncoder):
    name = "trained"

    def __init__(self, weights: Path | str, image_size: int | None = None, normalize: bool = True):
        obj = read_encoder_file(weights)
        self.method, self.backbone_name = obj["method"], obj["backbone"]
        self.channels, self.trained_size = int(obj["channels"]), int(obj["image_size"])
        self.image_size = int(image_size or self.trained_size)
        self.normalize, self.weights = bool(normalize), str(weights)
        self.net, self.dim = build_backbone(self.backbone_name, self.channels, self.trained_size)
        try:
            self.net.load_state_dict(obj["state_dict"])
        except RuntimeError as e:
            raise CurateError(f"trained encoder {weights} does not fit {self.backbone_name}: "
                              f"{str(e).splitlines()[0]}") from None
        self.net.eval()
        self.heads = obj.get("heads")  # metric-learning / classifier heads (curate.trainers.heads)
        self._tf = eval_transform(self.image_size, self.channels)

    @torch.inference_mode()
    def encode(self, x):
        y = super().encode(x).float()
        return F.normalize(y, dim=1) if self.normalize else y

    def params(self):
        return {**super().params(), "method": self.method, "backbone": self.backbone_name,
                "channels": self.channels, "trained_image_size": self.trained_size,
                "normalize": self.normalize}


@ENCODERS.register("trained")
def _trained(weights=None, image_size=None, normalize=True, **_recorded):
    """Factory: ``weights`` = the run's encoder.pt; other recorded Model params are ignored
    (the file is authoritative)."""
    if weights is None:
        raise CurateError("the trained encoder needs weights (a run's encoder.pt)")
    from curate.trainers.heads import with_heads  # runs with heads (metric learning, classifier)

    return with_heads(TrainedEncoder(weights, image_size=image_size, normalize=normalize))
