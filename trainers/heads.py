"""Heads on top of a trained backbone, saved in ``encoder.pt`` and used by ``curate embed``.

Metric-learning runs (contrastive, triplet, NCL) embed with ``backbone -> EmbeddingHead``
(an MLP ``D -> hidden -> embedding_dim``; 2-D works); the classifier run embeds with
the backbone's penultimate features and keeps its linear layer for
:meth:`HeadedEncoder.predict_proba`. An NCL run with ``--with-ce`` has both.

``encoder.pt`` (``curate.trainers.encoder``) then holds a ``heads`` entry::

    {"embedding": {"spec": {...}, "state_dict": {...}} | None,
     "classifier": {"spec": {...}, "state_dict": {...}, "input": "features"|"embedding"} | None,
     "classes": [str, ...]}

and the ``trained`` encoder factory wraps such files in :class:`HeadedEncoder`.
Cost: the MLP is negligible next to the backbone.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from curate.encoders.base import Encoder
from curate.errors import CurateError


class EmbeddingHead(nn.Module):
    """MLP ``in_dim -> hidden -> out_dim`` (Linear, BatchNorm, PReLU, Linear); (B, in) -> (B, out)."""

    def __init__(self, in_dim: int, out_dim: int, hidden: int = 256):
        super().__init__()
        if out_dim < 1 or hidden < 1:
            raise CurateError(f"--embedding-dim and hidden size must be >= 1, got {out_dim}, {hidden}")
        self.spec = {"kind": "mlp", "in_dim": int(in_dim), "out_dim": int(out_dim), "hidden": int(hidden)}
        self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.BatchNorm1d(hidden), nn.PReLU(),
                                 nn.Linear(hidden, out_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def build_head(spec: dict[str, Any]) -> nn.Module:
    """Rebuild a head from its ``spec`` (``mlp`` or ``linear``)."""
    kind = spec.get("kind")
    if kind == "mlp":
        return EmbeddingHead(spec["in_dim"], spec["out_dim"], spec["hidden"])
    if kind == "linear":
        return nn.Linear(spec["in_dim"], spec["out_dim"])
    raise CurateError(f"unknown head kind {kind!r} in a trained encoder file")


def linear_spec(layer: nn.Linear) -> dict[str, Any]:
    return {"kind": "linear", "in_dim": int(layer.in_features), "out_dim": int(layer.out_features)}


def pack(head: nn.Module | None, spec: dict | None, **extra) -> dict | None:
    """``{"spec", "state_dict", **extra}`` of a head (CPU copies), or None."""
    if head is None:
        return None
    return {"spec": dict(spec), "state_dict": {k: v.detach().cpu().clone()
                                               for k, v in head.state_dict().items()}, **extra}


def _load(entry: dict | None) -> nn.Module | None:
    if not entry:
        return None
    head = build_head(entry["spec"])
    try:
        head.load_state_dict(entry["state_dict"])
    except RuntimeError as e:
        raise CurateError(f"trained encoder head does not fit its spec: {str(e).splitlines()[0]}") from None
    return head.eval()


class HeadedEncoder(Encoder):
    """A ``trained`` encoder (``curate.trainers.encoder.TrainedEncoder``) plus its heads.

    ``encode``: backbone -> embedding head (if any) -> L2-normalise when ``normalize``;
    float32 (B, dim). ``predict_proba``: softmax over ``classes`` (B, K) of the
    classifier head, for runs that have one (classifier; NCL ``--with-ce``).
    """

    name = "trained"

    def __init__(self, base, heads: dict[str, Any]):
        self.base = base
        self.embedding_head = _load(heads.get("embedding"))
        cls = heads.get("classifier")
        self.classifier = _load(cls)
        self.classifier_input = (cls or {}).get("input", "features")
        self.classes = list(heads.get("classes") or [])
        self.channels, self.image_size = base.channels, base.image_size
        self.normalize = base.normalize
        self.dim = self.embedding_head.spec["out_dim"] if self.embedding_head is not None else base.dim

    def transform(self, img):
        return self.base.transform(img)

    def to(self, device):
        self.base.to(device)
        for h in (self.embedding_head, self.classifier):
            if h is not None:
                h.to(device)
        return self

    def _features(self, x):
        return self.base.net(x).flatten(1).float()

    @torch.inference_mode()
    def encode(self, x):
        y = self._features(x)
        if self.embedding_head is not None:
            y = self.embedding_head(y)
        return F.normalize(y, dim=1) if self.normalize else y

    @torch.inference_mode()
    def predict_proba(self, x: torch.Tensor) -> torch.Tensor:
        """Class probabilities (B, K) for normalised images (B, C, S, S); column order = ``classes``."""
        if self.classifier is None:
            raise CurateError(f"model of method {self.base.method} has no classifier head; "
                              "train with --method classifier (or ncl --with-ce)")
        f = self._features(x)
        if self.classifier_input == "embedding":
            f = F.normalize(self.embedding_head(f), dim=1)
        return torch.softmax(self.classifier(f), dim=1)

    def params(self):
        p = self.base.params()
        heads = {"embedding": self.embedding_head, "classifier": self.classifier}
        p.update(dim=self.dim, heads=[k for k, h in heads.items() if h is not None])
        return p


def with_heads(base) -> Encoder:
    """Wrap a TrainedEncoder whose file carries ``heads``; others are returned unchanged."""
    heads = getattr(base, "heads", None)
    return HeadedEncoder(base, heads) if heads else base
