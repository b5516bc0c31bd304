"""The strategies beyond k-center and random, registered in ``SELECTORS``.

Signatures and return values: see :mod:`curate.select`. Costs are in each
implementation's docstring; none builds an N x N matrix except ProbCover's sparse ball
graph (O(E) memory).
"""

from __future__ import annotations

import numpy as np

from curate.select import Picks, kcenter_greedy, pool_rows, random_picks, register
from curate.select.clusters import as_space, cluster_gap
from curate.select.probcover import probcover as _probcover
from curate.select.typiclust import typical_rows, typiclust as _typiclust
from curate.select.uncertainty import rank_uncertain

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
