"""Selection of what to label.

``SELECTORS`` maps a strategy name to ``fn(X, budget, seeds, metric, random_state,
device, fp16) -> (indices int64[budget], distances float32[budget])``.
``kcenter_greedy`` is the pure kernel; :func:`curate.select.selection.select_images`
runs a strategy over the index and stores the result.
"""

from __future__ import annotations

import numpy as np

from curate.errors import CurateError
from curate.registry import Registry
from curate.select.kcenter import kcenter_greedy

SELECTORS: Registry = Registry("strategy")


@SELECTORS.register("kcenter")
def _kcenter(X, budget, seeds, metric, random_state, device, fp16):
    return kcenter_greedy(X, budget, seeds=seeds, metric=metric, device=device, fp16=fp16,
                          random_state=random_state)


@SELECTORS.register("random")
def random_selection(X, budget, seeds, metric, random_state, device, fp16):
    """Uniform random picks from the pool (rows not in ``seeds``); distances are NaN."""
    pool = np.setdiff1d(np.arange(len(X)), np.asarray(seeds if seeds is not None else [], dtype=np.int64))
    if budget <= 0:
        raise CurateError(f"budget must be positive, got {budget}")
    if budget > len(pool):
        raise CurateError(f"budget {budget} is larger than the pool of {len(pool)} images")
    picks = np.random.default_rng(random_state).choice(pool, size=budget, replace=False)
    return picks.astype(np.int64), np.full(budget, np.nan, dtype=np.float32)


__all__ = ["SELECTORS", "kcenter_greedy"]
