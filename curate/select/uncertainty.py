"""Uncertainty strategies: a probe trained on the labelled seeds asks for what it
is least sure of.

- ``margin``: smallest gap between the probe's two most likely classes (Scheffer et al.
  2001; the strongest simple baseline in Munjal et al. 2022).
- ``entropy``: highest predictive entropy (Shannon 1948; Settles 2009 survey).
- ``badge``: k-means++ seeding over gradient embeddings (Ash et al. 2020, "Deep Batch
  Active Learning by Diverse, Uncertain Gradient Lower Bounds", ICLR): uncertain *and*
  diverse. For a linear probe with softmax output p(x) over C classes the gradient of the
  cross-entropy at the predicted label w.r.t. the last layer is
  g(x) = (p(x) - onehot(argmax p(x))) (outer) [x, 1], a C x (d+1) matrix.

All need labels of at least 2 classes among the seeds; with fewer, the strategies fall
back to uniform random picks (the usual random initial set of uncertainty sampling) and
say so in ``info['fallback']``.
"""

from __future__ import annotations

import numpy as np


def _labelled(seeds, labels):
    if labels is None or seeds is None or len(seeds) == 0:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    seeds, labels = np.asarray(seeds, np.int64), np.asarray(labels, np.int64)
    keep = labels >= 0
    return seeds[keep], labels[keep]


def probe_on_seeds(X, seeds, labels, probe="logistic", random_state=None):
    """Fit ``probe`` on the labelled seed rows; None when they hold < 2 classes."""
    rows, y = _labelled(seeds, labels)
    if len(np.unique(y)) < 2:
        return None, {"fallback": "random: fewer than 2 labelled classes among the seeds"}
    from curate.select.probe import fit_probe  # sklearn: loaded only when a probe is fitted

    model = fit_probe(probe, np.asarray(X)[rows], y, random_state)
    return model, {"probe": probe, "probe_trained_on": int(len(rows)),
                   "probe_classes": [int(c) for c in model.classes_]}


def margin_scores(P: np.ndarray) -> np.ndarray:
    """p_top1 - p_top2 per row of probabilities ``P`` (n, C); lower = more uncertain."""
    part = np.sort(P, axis=1)
    return (part[:, -1] - part[:, -2]).astype(np.float32)


def entropy_scores(P: np.ndarray) -> np.ndarray:
    """Shannon entropy (nats) per row of ``P`` (n, C); higher = more uncertain."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return (-np.where(P > 0, P * np.log(P), 0.0).sum(axis=1)).astype(np.float32)


def gradient_embedding_parts(probe, X):
    """BADGE's gradient embedding of a linear probe in factored form.

    Returns ``(A float64 (n, C), H float64 (n, d+1))`` with g_i = outer(A_i, H_i):
    A = p - onehot(argmax p), H = [scaled x, 1] (the probe's input to its last
    layer). ``||g_i - g_j||^2 = |A_i|^2 |H_i|^2 + |A_j|^2 |H_j|^2 - 2 (A_i.A_j)(H_i.H_j)``,
    so distances need O(C + d) per pair and the n x C(d+1) matrix is never built.
    """
    scaler = probe[:-1]
    H = np.asarray(scaler.transform(X), dtype=np.float64)
    H = np.hstack([H, np.ones((len(H), 1))])
    P = probe.predict_proba(X).astype(np.float64)
    A = P.copy()
    A[np.arange(len(P)), P.argmax(axis=1)] -= 1.0
    return A, H


def kmeanspp_factored(A, H, budget, rng=None):
    """k-means++ seeding (Arthur & Vassilvitskii 2007) over g_i = outer(A_i, H_i).

    The first pick is the largest gradient norm (as BADGE's code does); each later pick
    is drawn with probability proportional to its squared distance to the nearest pick.
    Returns ``(indices int64[budget], d2 float32[budget])`` (d2: the squared distance
    when picked; inf for the first). Cost O(budget * n * (C + d)), memory O(n).
    """
    rng = np.random.default_rng(rng)
    na, nh = (A * A).sum(1), (H * H).sum(1)
    norms = na * nh
    first = int(np.argmax(norms))
    picks, d2s = [first], [np.inf]
    d2 = np.full(len(A), np.inf)
    for _ in range(budget - 1):
        j = picks[-1]
        dist = norms + norms[j] - 2.0 * (A @ A[j]) * (H @ H[j])
        d2 = np.minimum(d2, np.maximum(dist, 0.0))
        d2[picks] = 0.0
        total = d2.sum()
        if total <= 0:      # every row duplicates a pick: take the lowest unpicked index
            nxt = int(np.flatnonzero(~np.isin(np.arange(len(A)), picks))[0])
        else:
            nxt = int(rng.choice(len(A), p=d2 / total))
        picks.append(nxt)
        d2s.append(float(d2[nxt]))
    return np.asarray(picks, np.int64), np.asarray(d2s, np.float32)


def rank_uncertain(X, budget, seeds, labels, pool, kind, probe="logistic", random_state=None):
    """Top-``budget`` pool rows by ``kind`` in {margin, entropy, badge}; see module doc.

    Returns ``(indices, scores, info)`` or None when the probe cannot be trained
    (fewer than 2 labelled classes; the caller falls back). Cost: probe fit on L rows
    plus one predict over the pool O(N d C); badge adds O(budget N (C + d)).
    """
    model, info = probe_on_seeds(X, seeds, labels, probe, random_state)
    if model is None:
        return None, info
    Xp = np.asarray(X)[pool]
    if kind == "badge":
        A, H = gradient_embedding_parts(model, Xp)
        idx, d2 = kmeanspp_factored(A, H, budget, random_state)
        return (pool[idx], d2), info
    P = model.predict_proba(Xp)
    if kind == "margin":
        s = margin_scores(P)
        order = np.argsort(s, kind="stable")[:budget]
    else:
        s = entropy_scores(P)
        order = np.argsort(-s, kind="stable")[:budget]
    return (pool[order], s[order]), info


__all__ = ["rank_uncertain", "margin_scores", "entropy_scores", "gradient_embedding_parts",
           "kmeanspp_factored", "probe_on_seeds"]
