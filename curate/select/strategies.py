"""The selection strategies: one registry (``SELECTORS``), pure functions over arrays.

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

Each wrapper here checks its arguments and calls one kernel module (:mod:`.kcenter`,
:mod:`.typiclust`, :mod:`.probcover`, :mod:`.uncertainty`, :mod:`.clusters`); costs are
in each kernel's docstring. None builds an N x N matrix except ProbCover's sparse ball
graph (O(E) memory). :func:`curate.select.selection.select_images` runs a strategy over
the index and stores the result.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from curate.errors import CurateError
from curate.registry import Registry
from curate.select.clusters import as_space, cluster_gap
from curate.select.kcenter import kcenter_greedy
from curate.select.probcover import probcover as _probcover
from curate.select.typiclust import typical_rows, typiclust as _typiclust
from curate.select.uncertainty import rank_uncertain
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


# auto: typicality while labels are few, then uncertainty + diversity (BADGE). The switch
# point, in labelled images per class seen, comes from benchmarks/al_curves.py (README).
AUTO_SWITCH_PER_CLASS = 10
# auto picks at random where the embedding is no more clustered than a Gaussian
# (clusters.cluster_gap below this): there every strategy measured trailed random (CIFAR-10
# pixels-pca, validation split; README "Which strategy?").
AUTO_MIN_CLUSTER_GAP = 0.08


@register("typiclust", "typicality, 1 / mean distance to the 20 nearest points of its cluster "
                       "(fewer in clusters under 100 rows; higher = more typical)")
def typiclust(X, budget, seeds=None, labels=None, *, metric="cosine", random_state=None,
              device="auto", fp16=False) -> Picks:
    """TypiClust (Hacohen et al. 2022); see :mod:`curate.select.typiclust`."""
    pool_rows(len(X), seeds, budget)
    idx, typ, info = _typiclust(X, budget, seeds, metric=metric, random_state=random_state)
    return Picks(idx, typ, info)


@register("probcover", "newly covered points within delta (higher = earlier)")
def probcover(X, budget, seeds=None, labels=None, *, metric="cosine", random_state=None,
              device="auto", fp16=False) -> Picks:
    """ProbCover (Yehuda et al. 2022); see :mod:`curate.select.probcover`."""
    pool_rows(len(X), seeds, budget)
    idx, gains, info = _probcover(X, budget, seeds, labels, metric=metric,
                                  random_state=random_state)
    return Picks(idx, gains, info)


def _uncertain(kind):
    def fn(X, budget, seeds=None, labels=None, *, metric="cosine", random_state=None,
           device="auto", fp16=False) -> Picks:
        pool = pool_rows(len(X), seeds, budget)
        out, info = rank_uncertain(X, budget, seeds, labels, pool, kind,
                                   random_state=random_state)
        if out is None:
            p = random_picks(X, budget, seeds, random_state=random_state)
            return Picks(p.indices, p.scores, info)
        return Picks(out[0], out[1], info)
    fn.__name__ = kind
    fn.__doc__ = (f"{kind} over a logistic probe on the labelled seeds; see "
                  ":mod:`curate.select.uncertainty`. Random when < 2 classes are labelled.")
    return fn


register("margin", "probe margin p1 - p2 (lower = more uncertain)")(_uncertain("margin"))
register("entropy", "probe entropy in nats (higher = more uncertain)")(_uncertain("entropy"))
badge = register("badge", "squared gradient-embedding distance to the nearest earlier pick "
                          "(k-means++ D^2; inf for the first)")(_uncertain("badge"))


@register("kcenter-typical", "distance to the nearest centre when picked (higher = farther)")
def kcenter_typical(X, budget, seeds=None, labels=None, *, metric="cosine", random_state=None,
                    device="auto", fp16=False) -> Picks:
    """k-center greedy restricted to typical pool rows (top half of typicality within
    each k-means cluster): furthest-point coverage without the outliers. Cost: that of
    :func:`curate.select.typiclust.typical_rows` plus k-center on the kept rows."""
    pool_rows(len(X), seeds, budget)
    seeds = np.asarray(seeds if seeds is not None else [], np.int64)
    keep = typical_rows(X, seeds, metric=metric, random_state=random_state)
    if len(keep) < budget:   # tiny pools: fall back to every pool row
        keep = np.setdiff1d(np.arange(len(X)), seeds)
    rows = np.concatenate([seeds, keep])
    idx, dist = kcenter_greedy(np.asarray(X)[rows], budget, seeds=np.arange(len(seeds)),
                               metric=metric, device=device, fp16=fp16,
                               random_state=random_state)
    return Picks(rows[idx], dist, {"typical_pool": int(len(keep))})


def auto_rule(switch_per_class: int = AUTO_SWITCH_PER_CLASS,
              min_cluster_gap: float = AUTO_MIN_CLUSTER_GAP):
    """The ``auto`` strategy with its switch points. Random picks when the embedding has
    no cluster structure to exploit (:func:`curate.select.clusters.cluster_gap` below
    ``min_cluster_gap``); else TypiClust while fewer than ``switch_per_class`` labelled
    images per seen class exist before this round (or fewer than 2 classes are labelled);
    after that BADGE (uncertain and diverse). The rule and its evidence: README "Which
    strategy?". Cost: the chosen strategy's plus that of ``cluster_gap``."""
    def auto(X, budget, seeds=None, labels=None, *, metric="cosine", random_state=None,
             device="auto", fp16=False) -> Picks:
        pool_rows(len(X), seeds, budget)
        lab = np.asarray(labels if labels is not None else [], np.int64)
        lab = lab[lab >= 0]
        n_classes = len(np.unique(lab))
        few = n_classes < 2 or len(lab) < switch_per_class * n_classes
        gap = cluster_gap(as_space(X, metric), random_state=random_state)
        fn = random_picks if gap < min_cluster_gap else typiclust if few else badge
        p = fn(X, budget, seeds, labels, metric=metric, random_state=random_state,
               device=device, fp16=fp16)
        chose = "random" if fn is random_picks else fn.__name__
        return Picks(p.indices, p.scores, {**p.info, "chose": chose,
                                           "cluster_gap": round(gap, 4),
                                           "min_cluster_gap": min_cluster_gap,
                                           "switch_per_class": switch_per_class})
    auto.__doc__ = auto_rule.__doc__
    return auto


auto = register("auto", "the score of the strategy auto chose (params.info.chose)")(auto_rule())
