"""Trainers that build latent spaces (installed as ``curate.trainers``).

``TRAINERS`` maps a method name (``simclr``, ``moco``, ``dino``, ``dino-neg``,
``autoencoder``, ``contrastive``, ``triplet``, ``ncl``, ``classifier``) to its
LightningModule factory; ``curate train --method`` choices come from it. The methods
live in :mod:`curate.trainers.methods`; this package holds the training infrastructure
(:mod:`~curate.trainers.config`, :mod:`~curate.trainers.run`, :mod:`~curate.trainers.fit`,
data module, augmentations, backbones, heads, the exported ``trained`` encoder).
"""

from curate.registry import Registry

TRAINERS: Registry = Registry("training method")
