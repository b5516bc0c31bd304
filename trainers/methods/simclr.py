"""SimCLR (Chen et al. 2020; thesis 003 ch. 5): one encoder, in-batch negatives.

Two augmented views per image -> backbone (B, D) -> 2-layer projection head (lightly
``SimCLRProjectionHead``, 128-d) -> NT-Xent (lightly ``NTXentLoss``, cosine similarity,
temperature tau; negatives gathered across DDP ranks). Loss per positive pair:
``-log(exp(sim(z_i, z_j)/tau) / sum_{k != i} exp(sim(z_i, z_k)/tau))``.
Defaults: tau = 0.07 and batch 128 as in the thesis; AdamW lr 1e-3 (small-data default;
the thesis used SGD). Features for ``curate embed``: the backbone, not the head.
Cost per step: 2 backbone forward/backward passes of the batch + a (2B)^2 similarity.
"""

from __future__ import annotations

from lightly.loss import NTXentLoss
from lightly.models.modules import SimCLRProjectionHead

from curate.trainers.augment import two_views
from curate.trainers.base import Option, TrainModule, forward_views, register


@register
class SimCLR(TrainModule):
    method = "simclr"
    OPTIONS = (
        Option("temperature", float, 0.07, "NT-Xent temperature tau"),
        Option("proj_dim", int, 128, "projection head output dimension"),
        Option("proj_hidden_dim", int, None, "projection head hidden dimension (default: backbone dim)"),
    )

    def __init__(self, **kw):
        super().__init__(**kw)
        o = self.opts
        self.projection_head = SimCLRProjectionHead(self.feature_dim,
                                                    o["proj_hidden_dim"] or self.feature_dim,
                                                    o["proj_dim"])
        self.criterion = NTXentLoss(temperature=o["temperature"], gather_distributed=True)

    def train_views(self):
        return two_views(self.hparams.image_size, self.hparams.channels)

    def forward(self, x):
        return self.projection_head(self.backbone(x).flatten(1))

    def training_step(self, batch, batch_idx):
        if batch is None:
            return None
        (x0, x1), _ = batch[0][:2], batch[1]
        z0, z1 = forward_views(self, [x0, x1])
        loss = self.criterion(z0, z1)
        self.log_loss("loss", loss, len(x0))
        return loss
