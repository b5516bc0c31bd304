"""MoCo v2 (He et al. 2020; thesis 003 ch. 4.5.1/5): query encoder + EMA key encoder + queue.

Query: backbone -> 2-layer head (lightly ``MoCoProjectionHead``, 128-d). Key: an
exponential moving average of the query network, ``theta_k <- m theta_k + (1 - m)
theta_q`` (lightly ``update_momentum``; m follows a cosine schedule from ``momentum``
to 1). Negatives: a queue of past keys (lightly ``NTXentLoss`` memory bank of
``queue_size`` x ``proj_dim``). Under DDP the keys of all ranks are all-gathered
before they are enqueued (``gather_distributed=True``, lightly >= 1.4.x fix of
lightly#1018), so every rank holds the same queue and results do not depend on the GPU
count; key batches are shuffled across ranks (shuffle-BN, lightly ``batch_shuffle``).
The queue is saved in checkpoints. ``queue_size`` is capped to the number of training
images minus one batch (a queue holding the current images' own keys as negatives
hurts on small data). Features for ``curate embed``: the query backbone.
Defaults: tau = 0.07 (thesis), m = 0.99 (small-data default; paper 0.999), queue 4096.
Cost per step: query forward/backward + key forward + B x queue similarities.
"""

from __future__ import annotations

import copy

import torch
from lightly.loss import NTXentLoss
from lightly.models.modules import MoCoProjectionHead
from lightly.models.utils import (batch_shuffle, batch_shuffle_distributed, batch_unshuffle,
                                  batch_unshuffle_distributed, deactivate_requires_grad,
                                  update_momentum)

from curate.trainers.augment import two_views
from curate.trainers.base import Option, TrainModule, register


@register
class MoCo(TrainModule):
    method = "moco"
    OPTIONS = (
        Option("temperature", float, 0.07, "InfoNCE temperature tau"),
        Option("proj_dim", int, 128, "projection head output dimension"),
        Option("proj_hidden_dim", int, None, "projection head hidden dimension (default: backbone dim)"),
        Option("queue_size", int, 4096, "number of negative keys in the queue"),
        Option("momentum", float, 0.99, "EMA momentum of the key encoder (cosine-scheduled to 1)"),
    )

    def __init__(self, **kw):
        super().__init__(**kw)
        o = self.opts
        self.projection_head = MoCoProjectionHead(self.feature_dim,
                                                  o["proj_hidden_dim"] or self.feature_dim,
                                                  o["proj_dim"])
        self.backbone_momentum = copy.deepcopy(self.backbone)
        self.projection_head_momentum = copy.deepcopy(self.projection_head)
        deactivate_requires_grad(self.backbone_momentum)
        deactivate_requires_grad(self.projection_head_momentum)
        self._make_criterion(o["queue_size"])

    def _make_criterion(self, size: int) -> None:
        self.queue_size = int(size)
        self.criterion = NTXentLoss(temperature=self.opts["temperature"],
                                    memory_bank_size=(self.queue_size, self.opts["proj_dim"]),
                                    gather_distributed=True)

    def configure_for_data(self, n_images, batch_size):
        cap = max(batch_size, n_images - batch_size)
        if self.queue_size > cap:
            self._make_criterion(cap)
            self.hparams["queue_size"] = cap
        return {"queue_size": self.queue_size}

    def train_views(self):
        return two_views(self.hparams.image_size, self.hparams.channels)

    def forward(self, x):
        return self.projection_head(self.backbone(x).flatten(1))

    @torch.no_grad()
    def forward_momentum(self, x):
        if self.trainer is not None and self.trainer.world_size > 1:
            x, shuffle = batch_shuffle_distributed(x)
            k = self.projection_head_momentum(self.backbone_momentum(x).flatten(1))
            return batch_unshuffle_distributed(k, shuffle)
        x, shuffle = batch_shuffle(x)
        k = self.projection_head_momentum(self.backbone_momentum(x).flatten(1))
        return batch_unshuffle(k, shuffle)

    def training_step(self, batch, batch_idx):
        if batch is None:
            return None
        (x_q, x_k), _ = batch[0][:2], batch[1]
        m = self.momentum(self.opts["momentum"])
        update_momentum(self.backbone, self.backbone_momentum, m=m)
        update_momentum(self.projection_head, self.projection_head_momentum, m=m)
        q = self.forward(x_q)
        k = self.forward_momentum(x_k).detach()
        loss = self.criterion(q, k)
        self.log_loss("loss", loss, len(x_q))
        return loss

    def on_save_checkpoint(self, checkpoint):
        mb = self.criterion.memory_bank
        checkpoint["moco_queue"] = {"bank": mb.bank.detach().cpu().clone(),
                                    "ptr": mb.bank_ptr.detach().cpu().clone()}

    def on_load_checkpoint(self, checkpoint):
        q = checkpoint.get("moco_queue")
        if q is not None:
            if tuple(q["bank"].shape) != tuple(self.criterion.memory_bank.bank.shape):
                self._make_criterion(q["bank"].shape[0])
            mb = self.criterion.memory_bank
            mb.bank = q["bank"].to(mb.bank.device)
            mb.bank_ptr = q["ptr"].to(mb.bank_ptr.device)
