"""Real image files for the novelty tests: an in-distribution pattern and a novel one.

In-distribution = a smooth horizontal gradient plus pixel noise; novel = a
checkerboard plus the same noise. Resized-pixel PCA embeddings (``pixels-pca``)
separate the two cleanly, while two in-distribution batches are exchangeable.
"""

from pathlib import Path

import numpy as np
from PIL import Image

SIZE = 16


def pattern_image(kind: str, seed: int, size: int = SIZE) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = np.linspace(0, 1, size)
    if kind == "in":
        base = np.tile(60 + 120 * x, (size, 1))
    elif kind == "novel":
        yy, xx = np.mgrid[:size, :size]
        base = np.where(((yy // 4) + (xx // 4)) % 2 == 0, 40.0, 200.0)
    else:
        raise ValueError(kind)
    img = base[:, :, None] + rng.normal(0, 25, (size, size, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def write_batch(folder: Path, kind: str, n: int, seed: int, labels: int = 0) -> Path:
    """``n`` PNGs of ``kind`` under ``folder`` (in ``class{j}`` subfolders when ``labels``)."""
    for i in range(n):
        sub = folder / f"class{i % labels}" if labels else folder
        sub.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pattern_image(kind, seed * 100_000 + i), "RGB").save(sub / f"{kind}{i:04d}.png")
    return folder


#: batch name -> (kind, count, seed): a reference, an in-distribution and a novel batch
BATCHES = {"ref": ("in", 80, 1), "new-in": ("in", 30, 2), "new-out": ("novel", 30, 3)}


def write_corpus(root: Path) -> dict[str, Path]:
    """The three folders of :data:`BATCHES` under ``root``."""
    return {b: write_batch(root / b, kind, n, seed) for b, (kind, n, seed) in BATCHES.items()}


def ingest_and_embed(index, ws, corpus: dict[str, Path]) -> str:
    """Ingest each folder as its batch, embed with pixels-pca; returns the set name."""
    from curate.embed import embed
    from curate.ingest import ingest

    for b, folder in corpus.items():
        ingest(index, [folder], batch=b)
    return embed(index, ws, encoder="pixels-pca", image_size=SIZE).embedding_set
