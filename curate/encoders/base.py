"""The encoder contract shared by built-in and trained encoders."""

from __future__ import annotations

from typing import Any, Iterable

import torch
from PIL import Image

from curate.registry import Registry

ENCODERS: Registry = Registry("encoder")


class Encoder:
    """Maps images to vectors.

    Subclasses set ``name``, ``channels`` (3 RGB or 1 L), ``image_size`` and ``dim``
    and implement ``transform`` (PIL image -> float tensor (C, H, W)) and ``encode``
    (float tensor (B, C, H, W) -> (B, dim)). Encoders with ``needs_fit`` learn from
    the images first (``fit``) and expose ``get_state``/``set_state`` (numpy arrays)
    so the fitted state can be stored and reused on resume.
    """

    name: str = "encoder"
    channels: int = 3
    image_size: int = 224
    dim: int = 0
    needs_fit: bool = False

    def transform(self, img: Image.Image) -> torch.Tensor:
        raise NotImplementedError

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def fit(self, batches: Iterable[torch.Tensor]) -> "Encoder":
        return self

    def to(self, device: torch.device) -> "Encoder":
        return self

    def params(self) -> dict[str, Any]:
        """Parameters recorded with every embedding set made by this encoder."""
        return {"encoder": self.name, "image_size": self.image_size, "dim": self.dim}

    def get_state(self) -> dict[str, Any]:
        return {}

    def set_state(self, state: dict[str, Any]) -> None:
        pass


class TorchEncoder(Encoder):
    """An encoder around a torch module ``net`` and an eval transform ``_tf``.

    ``encode`` returns ``net(x)`` flattened to (B, dim) under ``inference_mode``.
    """

    net: torch.nn.Module
    _tf: Any

    def transform(self, img: Image.Image) -> torch.Tensor:
        return self._tf(img)

    def to(self, device: torch.device) -> "TorchEncoder":
        self.net.to(device)
        return self

    @torch.inference_mode()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).flatten(1)
