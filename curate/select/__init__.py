"""Selection of what to label: one registry of strategies, pure functions over arrays.

Every strategy in ``SELECTORS`` has the signature::

    fn(X, budget, seeds=None, labels=None, *, metric="cosine", random_state=None,
       device="auto", fp16=False) -> Picks

- ``X``: float32 (N, d), the pool *and* the seeds (rows of earlier picks/labelled images).
- ``seeds``: int64 (L,) rows of ``X`` that are already centres (labelled images and
  earlier picks); they are never picked.
- ``labels``: int64 (L,) class codes of ``seeds`` (``-1``: picked but not labelled yet),
  or None. A strategy sees labels of seed rows only: the labels of the pool are never
  passed to it (``curate simulate`` enforces this with its oracle).
- ``Picks.indices``: int64 (budget,) rows of ``X`` in pick order (best first);
  ``Picks.scores``: float32 (budget,) each pick's score, whose meaning and sign are in
  ``SCORES[name]``; ``Picks.info``: what the strategy decided (fallbacks, probe, delta...).

:func:`curate.select.selection.select_images` runs a strategy over the index and stores
the result.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from curate.errors import CurateError
from curate.registry import Registry
from curate.select.kcenter import kcenter_greedy
from curate.validation import check_budget

SELECTORS: Registry = Registry("strategy")
SCORES: dict[str, str] = {}
DEFAULT_STRATEGY = "auto"


class Picks(NamedTuple):
    indices: np.ndarray
    scores: np.ndarray
    info: dict


def register(name: str, score: str):
    """Register a strategy under ``name``; ``score`` says what its per-pick score means."""
    def deco(fn):
        SCORES[name] = score
        return SELECTORS.register(name)(fn)
    return deco


def pool_rows(n: int, seeds, budget: int) -> np.ndarray:
    """Rows of an ``n``-row X that may be picked (not seeds); checks ``budget``."""
    seeds = np.asarray(seeds if seeds is not None else [], dtype=np.int64)
    if seeds.size and (seeds.min() < 0 or seeds.max() >= n):
        raise CurateError(f"seed rows must lie in [0, {n})")
    pool = np.setdiff1d(np.arange(n), seeds)
    check_budget(budget, len(pool))
    return pool


@register("kcenter", "distance to the nearest centre when picked (higher = farther)")
def kcenter_picks(X, budget, seeds=None, labels=None, *, metric="cosine", random_state=None,
            device="auto", fp16=False) -> Picks:
    """k-center greedy (furthest-point sampling; Sener & Savarese 2018). See
    :func:`curate.select.kcenter.kcenter_greedy`. Cost: O((budget + L) N d), memory O(N)."""
    idx, dist = kcenter_greedy(X, budget, seeds=seeds, metric=metric, device=device, fp16=fp16,
                               random_state=random_state)
    return Picks(idx, dist, {})


@register("random", "none (NaN)")
def random_picks(X, budget, seeds=None, labels=None, *, metric="cosine", random_state=None,
           device="auto", fp16=False) -> Picks:
    """Uniform random picks from the pool. Cost: O(N)."""
    pool = pool_rows(len(X), seeds, budget)
    picks = np.random.default_rng(random_state).choice(pool, size=budget, replace=False)
    return Picks(picks.astype(np.int64), np.full(budget, np.nan, dtype=np.float32), {})


from curate.select import strategies as _strategies  # noqa: E402,F401  (registers the rest)

__all__ = ["SELECTORS", "SCORES", "DEFAULT_STRATEGY", "Picks", "register", "pool_rows",
           "kcenter_greedy", "kcenter_picks", "random_picks"]
