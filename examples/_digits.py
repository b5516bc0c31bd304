"""Small real data for the examples: sklearn's 8x8 digits (in the sklearn wheel) as PNGs.

``write_digits(folder, rows)`` writes images ``rows`` of the 1,797 digits upscaled to
32x32 in ImageFolder layout ``folder/<digit>/<row>.png`` and returns their paths.
``invert=True`` writes them as negatives (white background: a shifted batch).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from curate.datasets import load_digits, write_pngs

#: the 1,797 rows in a seeded random order: the file is ordered by writer, so a split by
#: position is a split by handwriting (a real shift); a split of ORDER is not
ORDER = np.random.default_rng(0).permutation(1797)


def write_digits(folder: Path | str, rows, invert: bool = False) -> list[Path]:
    images, labels = load_digits()  # uint8 (1797, 8, 8), int64 (1797,)
    rows = np.asarray(rows)
    imgs = 255 - images[rows] if invert else images[rows]
    return write_pngs(imgs, labels[rows], folder, upscale=4)


def digit_of(path: str) -> str:
    """The true digit of a written image: its folder name (the annotator, in the examples)."""
    return Path(path).parent.name
