"""Per-class running sums for class-conditional scorers (mahalanobis-class, centroid,
vmf): stacked arrays with one row per class, kept in sorted label order while new
labels appear across ``partial_fit`` calls."""

from __future__ import annotations

from typing import Any

import numpy as np

from curate.errors import CurateError
from curate.novelty._base import _to_python


class ClassAccumulatorMixin:
    """Per-class running sums stacked along axis 0, kept in sorted label order.

    Subclasses give ``_class_shapes(d)`` -> {attribute: (per-class shape, dtype)}; the
    arrays are created on the first chunk and grown when unseen labels arrive.
    Without labels there is one group (label 0) and ``has_labels_`` is False.
    """

    def _class_shapes(self, d: int) -> dict[str, tuple[tuple[int, ...], Any]]:
        raise NotImplementedError

    def _group_index(self, y: np.ndarray | None, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Grow ``classes_`` with unseen labels; return (group index per row, groups present)."""
        d = self.n_features_in_
        if getattr(self, "classes_", None) is None:
            labels = np.unique(y) if y is not None else np.array([0])
            self.classes_ = labels[:0]
            for attr, (shape, dtype) in self._class_shapes(d).items():
                setattr(self, attr, np.zeros((0, *shape), dtype))
        if y is None:
            y = np.zeros(n, dtype=self.classes_.dtype)
        new = np.setdiff1d(np.unique(y), self.classes_)
        if new.size:
            try:
                merged = np.union1d(self.classes_, new)
            except TypeError:
                raise CurateError("labels mix types across partial_fit calls") from None
            pos = np.searchsorted(merged, self.classes_)
            for attr in self._class_shapes(d):
                old = getattr(self, attr)
                arr = np.zeros((len(merged), *old.shape[1:]), old.dtype)
                arr[pos] = old
                setattr(self, attr, arr)
            self.classes_ = merged
        gi = np.searchsorted(self.classes_, y)
        return gi, np.unique(gi)

    def _add_class_sums(self, Xp: np.ndarray, y: np.ndarray | None, sum_attr: str) -> None:
        """Add each class's row count to ``count_`` and its row sum to ``sum_attr``."""
        gi, present = self._group_index(y, len(Xp))
        sums = getattr(self, sum_attr)
        for g in present:
            rows = Xp if len(present) == 1 else Xp[gi == g]
            self.count_[g] += len(rows)
            sums[g] += rows.sum(axis=0)

    def _check_class_sizes(self, counts: np.ndarray) -> None:
        small = np.flatnonzero(counts < self.min_class_size)
        if small.size:
            c = _to_python(self.classes_[small[0]])
            raise CurateError(
                f"class {c!r} has {int(counts[small[0]])} sample(s); {self.name} needs "
                f">= {self.min_class_size} per class"
            )

    def _labels_out(self, gi: np.ndarray) -> np.ndarray | None:
        return self.classes_[gi] if self.has_labels_ else None

    def _nearest_of(self, dist: np.ndarray) -> tuple[np.ndarray | None, np.ndarray]:
        """(label or None, distance) of each row's nearest class, from ``dist`` (n, K)."""
        gi = dist.argmin(axis=1)
        return self._labels_out(gi), dist[np.arange(len(gi)), gi]
