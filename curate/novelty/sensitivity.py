"""Choosing a scorer and its settings without OOD data (methods.md §4, thesis 003 ch. 6).

Sensitivity: take ``n_sens`` random training rows out as ``sens``, fit the scorer on
the remaining rows (the reference) and compute
``AUROC(sens vs in-distribution test)`` with the test rows as the positive class, i.e.
P(score(test row) > score(held-out training row)). 0.5 = the scorer cannot tell unseen
training rows from test rows; above 0.5 = test rows look more novel than held-out
training rows (a train/test gap the scorer is sensitive to).

Rule used by ``tune`` (the thesis found values a little above 0.5 go with the best
OOD performance): among candidates with sensitivity >= 0.5 (all candidates if none is),
take those within ``tie_tol`` of the smallest |sensitivity - 0.5|; among these pick the
highest 10-NN accuracy on the in-distribution test set when labels are given (it also
correlates with OOD AUROC; it differs between candidates only when they use different
embeddings), otherwise the closest to 0.5, the earlier candidate winning exact ties.
The same sens/reference split is used for every candidate.
"""

from __future__ import annotations

import time
from typing import Any, Mapping

import numpy as np
from sklearn.metrics import roc_auc_score

from curate.errors import CurateError
from curate.novelty._base import check_labels, check_matrix, l2_normalize
from curate.novelty._faiss import search_topk


def split_sens(n: int, n_sens: int, random_state: int | None = 0) -> tuple[np.ndarray, np.ndarray]:
    """(sens indices, reference indices), both sorted; n_sens < n."""
    n_sens = int(n_sens)
    if not 1 <= n_sens < n:
        raise CurateError(f"n_sens must be in [1, {n - 1}] for {n} training rows, got {n_sens}")
    perm = np.random.default_rng(random_state).permutation(n)
    return np.sort(perm[:n_sens]), np.sort(perm[n_sens:])


def sensitivity(scorer, X_train, X_test_in, *, y_train=None, n_sens: int = 1000,
                random_state: int | None = 0) -> float:
    """AUROC(held-out training rows vs in-distribution test rows), test = positive.

    ``scorer``: an (unfitted) scorer instance used as a template (a fresh copy with the
    same parameters is fitted) or a registry name.
    """
    from curate.novelty import make_scorer

    Xtr = check_matrix(X_train, "X_train")
    Xte = check_matrix(X_test_in, "X_test_in", Xtr.shape[1])
    if isinstance(scorer, str):
        fresh = make_scorer(scorer)
    else:
        fresh = type(scorer)(**scorer.get_params())
    sens, ref = split_sens(len(Xtr), min(int(n_sens), len(Xtr) - 1), random_state)
    y_ref = None if y_train is None else check_labels(y_train, len(Xtr), "y_train")[ref]
    fresh.fit(Xtr[ref], y_ref)
    s_sens = fresh.score_samples(Xtr[sens])
    s_test = fresh.score_samples(Xte)
    labels = np.r_[np.zeros(len(s_sens)), np.ones(len(s_test))]
    return float(roc_auc_score(labels, np.r_[s_sens, s_test]))


def knn_accuracy(X_train, y_train, X_test, y_test, k: int = 10) -> float:
    """Accuracy of a k-NN majority vote (cosine similarity) of test rows on train rows."""
    Xtr = check_matrix(X_train, "X_train")
    Xte = check_matrix(X_test, "X_test", Xtr.shape[1])
    ytr = check_labels(y_train, len(Xtr), "y_train")
    yte = check_labels(y_test, len(Xte), "y_test")
    classes, ytr_i = np.unique(ytr, return_inverse=True)
    k = min(int(k), len(Xtr))
    _, I = search_topk(l2_normalize(Xtr), l2_normalize(Xte), k)
    votes = np.zeros((len(Xte), len(classes)))
    np.add.at(votes, (np.repeat(np.arange(len(Xte)), k), ytr_i[I].reshape(-1)), 1.0)
    return float(np.mean(classes[votes.argmax(axis=1)] == yte))


def _as_dict(X, name) -> dict[str, np.ndarray]:
    if isinstance(X, Mapping):
        if not X:
            raise CurateError(f"{name} is an empty mapping")
        return {str(k): check_matrix(v, f"{name}[{k!r}]") for k, v in X.items()}
    return {"default": check_matrix(X, name)}


def tune(X_train, X_test_in, candidates: list[dict[str, Any]], *, y_train=None, y_test=None,
         n_sens: int = 1000, tie_tol: float = 0.01, knn_k: int = 10,
         random_state: int | None = 0) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Pick a scorer and settings from in-distribution data only (see module doc).

    ``X_train``/``X_test_in``: arrays, or mappings embedding name -> array (same rows
    embedded differently). ``candidates``: dicts ``{"scorer": name, **params}`` with an
    optional ``"embedding"`` key naming one of the mappings' entries.
    Returns (chosen candidate dict, table): one row per candidate with ``candidate``,
    ``scorer``, ``params``, ``embedding``, ``sensitivity``, ``knn_accuracy``,
    ``seconds``, ``error`` and ``selected``.
    """
    from curate.novelty import make_scorer

    if not candidates:
        raise CurateError("tune needs at least one candidate")
    tr, te = _as_dict(X_train, "X_train"), _as_dict(X_test_in, "X_test_in")
    if set(tr) != set(te):
        raise CurateError("X_train and X_test_in must name the same embeddings")
    labelled = y_train is not None and y_test is not None
    acc_cache: dict[str, float] = {}
    rows: list[dict[str, Any]] = []
    for i, cand in enumerate(candidates):
        cand = dict(cand)
        if "scorer" not in cand:
            raise CurateError(f"candidate {i} has no 'scorer' key")
        name = cand.pop("scorer")
        emb = str(cand.pop("embedding", next(iter(tr))))
        if emb not in tr:
            raise CurateError(f"candidate {i}: unknown embedding {emb!r}; have {', '.join(tr)}")
        row: dict[str, Any] = {"candidate": i, "scorer": name, "params": cand, "embedding": emb,
                               "sensitivity": None, "knn_accuracy": None, "seconds": None,
                               "error": None, "selected": False}
        t0 = time.perf_counter()
        try:
            row["sensitivity"] = sensitivity(make_scorer(name, **cand), tr[emb], te[emb],
                                             y_train=y_train, n_sens=n_sens,
                                             random_state=random_state)
        except CurateError as exc:
            row["error"] = str(exc)
        row["seconds"] = time.perf_counter() - t0
        if labelled:
            if emb not in acc_cache:
                acc_cache[emb] = knn_accuracy(tr[emb], y_train, te[emb], y_test, knn_k)
            row["knn_accuracy"] = acc_cache[emb]
        rows.append(row)
    best = select_row(rows, labelled=labelled, tie_tol=tie_tol)
    best["selected"] = True
    chosen = {"scorer": best["scorer"], **best["params"]}
    if len(tr) > 1 or "embedding" in candidates[best["candidate"]]:
        chosen["embedding"] = best["embedding"]
    return chosen, rows


def select_row(rows: list[dict[str, Any]], *, labelled: bool, tie_tol: float = 0.01) -> dict[str, Any]:
    """The row chosen by the rule in the module doc (rows need ``sensitivity``,
    ``candidate`` and, when ``labelled``, ``knn_accuracy``)."""
    valid = [r for r in rows if r.get("sensitivity") is not None]
    if not valid:
        err = next((r.get("error") for r in rows if r.get("error")), "none")
        raise CurateError(f"no candidate could be evaluated; first error: {err}")
    pool = [r for r in valid if r["sensitivity"] >= 0.5] or valid
    gap = min(abs(r["sensitivity"] - 0.5) for r in pool)
    tied = [r for r in pool if abs(r["sensitivity"] - 0.5) <= gap + tie_tol]
    if labelled:
        return max(tied, key=lambda r: (r["knn_accuracy"], -abs(r["sensitivity"] - 0.5),
                                        -r["candidate"]))
    return min(tied, key=lambda r: (abs(r["sensitivity"] - 0.5), r["candidate"]))
