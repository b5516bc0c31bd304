"""Encoder registry: image -> vector models usable by ``curate embed``.

``ENCODERS`` maps a name to a factory ``factory(weights: Path | None, image_size:
int | None, **params) -> Encoder``. Built in: torchvision backbones (weights from a
local file or a torchvision name, :mod:`curate.encoders.weights`) and ``pixels-pca``.
The ``trained`` encoder (a backbone from ``curate train``) is registered by
:mod:`curate.trainers.encoder` when imported: this package does not import the trainers
(they build on it: backbones, heads, weights).
"""

from curate.encoders.base import ENCODERS, Encoder  # noqa: F401
from curate.encoders import pixels_pca, torchvision_backbones  # noqa: F401  (registration)

