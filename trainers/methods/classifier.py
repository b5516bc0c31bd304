"""``classifier``: the supervised baseline of paper 000 (labels from the index).

A backbone (``--backbone``: small-cnn, resnet18, resnet50, vit-s; ImageNet-style
weights from a local file or a torchvision name with ``--weights``) with a new linear head over the classes,
cross-entropy, SGD with momentum (0.9). ``--mode fine-tune`` trains everything;
``--mode linear-probe`` ("feature extraction" in 000) freezes the backbone (also its
BatchNorm statistics) and trains the head only -- meaningful with ``--weights`` (a
pretrained or SSL-trained backbone); without, it probes random features (warned).
Paper defaults: 5 epochs, batch 32, SGD (``RECOMMENDED``; ``TrainConfig.build`` uses
them when these settings are not given, from Python and the CLI alike), lr 0.01.

``curate embed --model RUN`` gives the penultimate (backbone) features, L2-normalised;
the softmax confidence is a baseline score: :func:`curate.embed.predict_proba` (index
images -> probabilities), then :func:`curate.novelty.softmax.softmax_novelty` (``1 - max p``,
higher = more novel); ``curate fit-scorer --kind softmax`` is the same baseline on stored
embeddings.
Cost per step: one backbone forward (+ backward unless linear-probe).
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from curate.trainers.base import Option, TrainModule, register
from curate.trainers.heads import linear_spec, pack
from curate.trainers.base import make_optimizers
from curate.trainers.methods.metric import MetricModule, plain_views
from curate.trainers.augment import single_mild_view


@register
class Classifier(TrainModule):
    method = "classifier"
    needs_labels = True
    default_lr = 0.01
    default_weight_decay = 1e-4
    RECOMMENDED = {"epochs": 5, "batch_size": 32, "optimizer": "sgd"}
    OPTIONS = (Option("mode", str, "fine-tune", "fine-tune (train all) or linear-probe (head only); "
                      "defaults 5 epochs, batch 32, SGD (paper 000) unless given",
                      ("fine-tune", "linear-probe")),
               Option("sgd_momentum", float, 0.9, "SGD momentum"),
               Option("augment", str, "none", "training augmentation: none or mild (crop, flip)",
                      ("none", "mild")))

    def __init__(self, **kw):
        super().__init__(**kw)
        self.fc: nn.Linear | None = None
        self.classes: list[str] = []
        self._bound = False
        if self.opts["mode"] == "linear-probe":
            self.backbone.requires_grad_(False)

    # data binding / checkpoint class handling shared with the metric trainers
    min_per_class = MetricModule.min_per_class
    bind_data = MetricModule.bind_data
    setup = MetricModule.setup
    on_save_checkpoint = MetricModule.on_save_checkpoint
    on_load_checkpoint = MetricModule.on_load_checkpoint
    param_groups = MetricModule.param_groups

    def _init_classes(self, n_classes: int) -> None:
        self.fc = nn.Linear(self.feature_dim, n_classes)

    def train_views(self):
        h = self.hparams
        if self.opts["augment"] == "mild":
            return single_mild_view(h.image_size, h.channels)
        return plain_views(h.image_size, h.channels)

    def _frozen(self) -> bool:
        return self.opts["mode"] == "linear-probe"

    def on_fit_start(self):
        super().on_fit_start()
        if self._frozen() and not self.hparams.weights and self.global_step == 0:
            warnings.warn("linear-probe without --weights trains a head on random features",
                          stacklevel=1)

    def on_train_epoch_start(self):
        if self._frozen():
            self.backbone.eval()  # keep BatchNorm statistics of the given weights

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (B, K)."""
        if self._frozen():
            with torch.no_grad():
                f = self.backbone(x).flatten(1)
        else:
            f = self.backbone(x).flatten(1)
        return self.fc(f)

    def training_step(self, batch, batch_idx):
        if batch is None:
            return None
        (x,), y = batch[0][:1], batch[1]
        logits = self(x)
        loss = F.cross_entropy(logits, y)
        self.log_loss("loss", loss, len(y))
        self.log("train_acc", (logits.argmax(1) == y).float().mean(), on_step=False, on_epoch=True,
                 batch_size=len(y))
        return loss

    @torch.no_grad()
    def predict_proba(self, x: torch.Tensor) -> torch.Tensor:
        """Softmax probabilities (B, K) of normalised images (B, C, S, S), eval mode."""
        was = self.training
        self.eval()
        try:
            return torch.softmax(self(x), dim=1)
        finally:
            self.train(was)

    def configure_optimizers(self):
        return make_optimizers(self, self.param_groups())

    def export_extra(self) -> dict[str, Any]:
        return {"file": {"heads": {"embedding": None, "classes": list(self.classes),
                                   "classifier": pack(self.fc, linear_spec(self.fc), input="features")}},
                "params": {"classes": list(self.classes), "mode": self.opts["mode"]}}

