"""Trainers that build latent spaces (installed as ``curate.trainers``).

``TRAINERS`` maps a method name (``simclr``, ``moco``, ``dino``, ``dino-neg``,
``autoencoder``, ``contrastive``, ``triplet``, ``ncl``, ``classifier``) to its
LightningModule factory; ``curate train --method`` choices come from it.
"""

from curate.registry import Registry

TRAINERS: Registry = Registry("training method")
