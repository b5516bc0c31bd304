"""Encoder registry: image -> vector models usable by ``curate embed``.

``ENCODERS`` maps a name to a factory ``factory(weights: Path | None, image_size:
int | None, **params) -> Encoder``. Built in: torchvision backbones (weights from a
local file or a torchvision name, :mod:`curate.encoders.weights`) and ``pixels-pca``; trained runs add their own.
"""

from curate.encoders.base import ENCODERS, Encoder  # noqa: F401
from curate.encoders import pixels_pca, torchvision_backbones  # noqa: F401  (registration)


def load_trained_encoders() -> None:
    """Import the trainers so that trained-model encoders register (if installed)."""
    try:
        import curate.trainers.encoder  # noqa: F401
    except ImportError:
        pass
