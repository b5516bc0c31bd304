"""Convolutional autoencoder (thesis 002): the encoder output is the latent space.

Encoder = the chosen backbone (pooled features, (B, D)); decoder = a linear map to a
(256, s0, s0) grid (s0 ~ 4) and ``n`` upsample-conv-BN-ReLU stages (channels halving
to >= 32), a final 3x3 conv to C channels and a resize to S x S. Loss: mean squared
error between the reconstruction and the (normalised) input view; with ``noise`` > 0 the
encoder sees the view plus Gaussian noise of that std (denoising autoencoder).
Views are mildly augmented (crop scale 0.85-1, flip). Features for ``curate embed``:
the encoder (backbone) output. Cost per step: one encoder + one decoder pass.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from curate.trainers.augment import single_mild_view
from curate.trainers.base import Option, TrainModule, register


class Decoder(nn.Module):
    """(B, D) -> (B, C, S, S)."""

    def __init__(self, dim: int, channels: int, image_size: int, width: int = 256):
        super().__init__()
        n_up = max(1, math.ceil(math.log2(max(2, image_size) / 4)))
        self.s0, self.size, self.width = math.ceil(image_size / 2 ** n_up), image_size, width
        self.fc = nn.Linear(dim, width * self.s0 * self.s0)
        layers: list[nn.Module] = []
        c = width
        for _ in range(n_up):
            c2 = max(32, c // 2)
            layers += [nn.Upsample(scale_factor=2, mode="nearest"),
                       nn.Conv2d(c, c2, 3, padding=1, bias=False), nn.BatchNorm2d(c2),
                       nn.ReLU(inplace=True)]
            c = c2
        layers.append(nn.Conv2d(c, channels, 3, padding=1))
        self.net = nn.Sequential(*layers)

    def forward(self, z):
        x = self.fc(z).view(len(z), self.width, self.s0, self.s0)
        x = self.net(F.relu(x))
        if x.shape[-1] != self.size:
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)
        return x


@register
class Autoencoder(TrainModule):
    method = "autoencoder"
    OPTIONS = (
        Option("noise", float, 0.0, "std of Gaussian input noise (denoising autoencoder); 0 = off"),
        Option("decoder_width", int, 256, "channels of the decoder's first feature map"),
    )

    def __init__(self, **kw):
        super().__init__(**kw)
        h = self.hparams
        self.decoder = Decoder(self.feature_dim, h.channels, h.image_size, self.opts["decoder_width"])

    def train_views(self):
        return single_mild_view(self.hparams.image_size, self.hparams.channels)

    def forward(self, x):
        return self.decoder(self.backbone(x).flatten(1))

    def training_step(self, batch, batch_idx):
        if batch is None:
            return None
        x = batch[0][0]
        inp = x + self.opts["noise"] * torch.randn_like(x) if self.opts["noise"] > 0 else x
        loss = F.mse_loss(self(inp), x)
        self.log_loss("loss", loss, len(x))
        return loss
