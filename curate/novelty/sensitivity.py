"""The sensitivity score: choosing a scorer's settings without OOD data (thesis 003 §3.4,
ch. 6 §4.2; methods.md §4).

Thesis 003 §3.4: "we randomly extract B samples from D_train^in without replacement as
D_train^sens and denote the remaining train samples as D_train^ref. We define the
sensitivity score as the AUROC value between D_train^sens and D_test^in, where
D_train^ref is used as new train data during the evaluation." D_train^in are the images
the *encoder was trained on*, D_test^in in-distribution images it never saw; here
``X_train`` / ``X_test_in`` are their embeddings. The scorer is fitted on the reference
rows, and sensitivity = P(score(test row) > score(sens row)) (test = positive; ties
count 1/2). 0.5: the scorer cannot tell images the encoder saw from unseen ones; above
0.5: it picks up the train/test gap, i.e. it is sensitive to features specific to the
training distribution. The thesis picks settings (evaluation temperature tau, negative
set, loss weight lambda) by *maximising* it: "for the range close to AUROC = 50%, the
higher the sensitivity score is, the better" (ch. 6); "tau = 0.04 which is found by
maximizing the sensitivity score" (§4.2).

:func:`tune` applies that rule to settings of **one scorer kind** (its parameters, or
the same kind on several embeddings of the same images, e.g. runs with different
lambda / negative sets). Different kinds score on different scales of "seen vs unseen"
(a 1-NN distance memorises more than a Mahalanobis distance, whatever their OOD
performance), and neither the thesis nor our benchmark shows that the score ranks
kinds, so mixed kinds are refused. Every candidate is scored on the same sens / test
rows, so their AUROCs are compared paired: DeLong et al. (1988) give the covariance of
correlated AUROCs, hence a 95% interval for each and for its difference to the best;
candidates whose difference to the best is not significant are reported as tied.
"""

from __future__ import annotations

import time
from typing import Any, Mapping

import numpy as np
from scipy.stats import norm, rankdata

from curate.errors import CurateError
from curate.novelty._base import check_labels, l2_normalize
from curate.novelty._faiss import search_topk
from curate.validation import check_matrix


def split_sens(n: int, n_sens: int, random_state: int | None = 0) -> tuple[np.ndarray, np.ndarray]:
    """(sens indices, reference indices), both sorted; n_sens < n."""
    n_sens = int(n_sens)
    if not 1 <= n_sens < n:
        raise CurateError(f"n_sens must be in [1, {n - 1}] for {n} training rows, got {n_sens}")
    perm = np.random.default_rng(random_state).permutation(n)
    return np.sort(perm[:n_sens]), np.sort(perm[n_sens:])


def delong(neg, pos) -> tuple[np.ndarray, np.ndarray]:
    """AUROCs of C scorers on the same samples and their DeLong covariance.

    ``neg``: (C, n) or (n,) scores of the negatives (sens rows), ``pos``: (C, m) or (m,)
    of the positives (test rows); higher = more positive. Returns (auc float[C],
    cov float[C, C]). Cost O(C (n + m) log(n + m)) (midranks, Sun & Xu 2014).
    """
    neg, pos = np.atleast_2d(np.asarray(neg, float)), np.atleast_2d(np.asarray(pos, float))
    n, m = neg.shape[1], pos.shape[1]
    if n < 2 or m < 2 or len(neg) != len(pos):
        raise CurateError(f"AUROC needs >= 2 rows per class and one row per scorer, got {n}/{m}")
    both = np.concatenate([pos, neg], axis=1)
    r_all = rankdata(both, axis=1)
    r_pos, r_neg = rankdata(pos, axis=1), rankdata(neg, axis=1)
    v10 = (r_all[:, :m] - r_pos) / n          # per positive: share of negatives below it
    v01 = 1.0 - (r_all[:, m:] - r_neg) / m    # per negative: share of positives above it
    auc = v10.mean(axis=1)
    cov = np.atleast_2d(np.cov(v10)) / m + np.atleast_2d(np.cov(v01)) / n
    return auc, cov


def sensitivity_scores(scorer, X_train, X_test_in, *, y_train=None, n_sens: int = 1000,
                       random_state: int | None = 0) -> tuple[np.ndarray, np.ndarray]:
    """(scores of the sens rows, scores of the test rows) by ``scorer`` fitted on the
    reference rows (see module doc). ``scorer``: an unfitted scorer used as a template
    (a fresh copy is fitted) or a registry name. Cost: one fit on n - n_sens rows and
    scoring of n_sens + n_test rows."""
    from curate.novelty import make_scorer

    Xtr = check_matrix(X_train, "X_train")
    Xte = check_matrix(X_test_in, "X_test_in", Xtr.shape[1])
    fresh = make_scorer(scorer) if isinstance(scorer, str) else type(scorer)(**scorer.get_params())
    sens, ref = split_sens(len(Xtr), min(int(n_sens), len(Xtr) - 1), random_state)
    y_ref = None if y_train is None else check_labels(y_train, len(Xtr), "y_train")[ref]
    fresh.fit(Xtr[ref], y_ref)
    return fresh.score_samples(Xtr[sens]), fresh.score_samples(Xte)


def sensitivity(scorer, X_train, X_test_in, *, y_train=None, n_sens: int = 1000,
                random_state: int | None = 0) -> float:
    """AUROC(sens rows vs test rows), test = positive (module doc)."""
    s_sens, s_test = sensitivity_scores(scorer, X_train, X_test_in, y_train=y_train,
                                        n_sens=n_sens, random_state=random_state)
    return float(delong(s_sens, s_test)[0][0])


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


def check_one_kind(candidates: list[dict[str, Any]]) -> str:
    """The scorer kind shared by all candidates; a CurateError saying why otherwise."""
    kinds = list(dict.fromkeys(str(c.get("kind")) for c in candidates))
    if len(kinds) > 1:
        raise CurateError(
            f"candidates mix scorer kinds ({', '.join(kinds)}): the sensitivity score ranks "
            "settings of one scorer (tau, k, an encoder's lambda or negative set; thesis 003), "
            "not kinds, which differ in how much they react to seen vs unseen images whatever "
            "their OOD quality; tune each kind on its own")
    return kinds[0]


def tune(X_train, X_test_in, candidates: list[dict[str, Any]], *, y_train=None, y_test=None,
         n_sens: int = 1000, knn_k: int = 10, level: float = 0.95,
         random_state: int | None = 0) -> tuple[dict[str, Any], list[dict[str, Any]], dict]:
    """Pick the candidate with the highest sensitivity (module doc).

    ``X_train`` (encoder's training images) / ``X_test_in`` (never seen): arrays, or
    mappings embedding name -> array with the *same rows* embedded differently.
    ``candidates``: dicts ``{"kind": kind, **params}`` of one kind, with an optional
    ``"embedding"`` key (default: the first mapping entry). One sens/reference split
    (``n_sens`` rows, ``random_state``) serves every candidate.
    Returns (chosen candidate, table, decision). Table rows: ``candidate``, ``kind``,
    ``params``, ``embedding``, ``sensitivity``, ``ci`` (DeLong, ``level``),
    ``diff_to_best``, ``diff_ci``, ``tied_with_best``, ``knn_accuracy`` (labels given),
    ``seconds``, ``error``, ``selected``. ``decision``: ``rule``, ``best``, ``decisive``
    (the runner-up is significantly lower), ``above_chance`` (the best's interval lies
    above 0.5), ``tied`` (candidate numbers), ``level``, ``n_sens``, ``n_test``.
    Cost: per candidate one fit on the reference and scoring of n_sens + n_test rows.
    """
    from curate.novelty import make_scorer

    if not candidates:
        raise CurateError("tune needs at least one candidate")
    check_one_kind(candidates)
    tr, te = _as_dict(X_train, "X_train"), _as_dict(X_test_in, "X_test_in")
    if set(tr) != set(te):
        raise CurateError("X_train and X_test_in must name the same embeddings")
    n_tr = {len(v) for v in tr.values()}
    if len(n_tr) > 1 or len({len(v) for v in te.values()}) > 1:
        raise CurateError("every embedding must hold the same training and test rows")
    n_sens = min(int(n_sens), n_tr.pop() - 1)
    labelled = y_train is not None and y_test is not None
    acc: dict[str, float] = {}
    rows, scores = [], {}
    for i, cand in enumerate(candidates):
        cand = dict(cand)
        name = cand.pop("kind")
        emb = str(cand.pop("embedding", next(iter(tr))))
        if emb not in tr:
            raise CurateError(f"candidate {i}: unknown embedding {emb!r}; have {', '.join(tr)}")
        row: dict[str, Any] = {"candidate": i, "kind": name, "params": cand, "embedding": emb,
                               "sensitivity": None, "ci": None, "diff_to_best": None,
                               "diff_ci": None, "tied_with_best": False, "knn_accuracy": None,
                               "seconds": None, "error": None, "selected": False}
        t0 = time.perf_counter()
        try:
            scores[i] = sensitivity_scores(make_scorer(name, **cand), tr[emb], te[emb],
                                           y_train=y_train, n_sens=n_sens,
                                           random_state=random_state)
        except CurateError as exc:
            row["error"] = str(exc)
        row["seconds"] = time.perf_counter() - t0
        if labelled:
            if emb not in acc:
                acc[emb] = knn_accuracy(tr[emb], y_train, te[emb], y_test, knn_k)
            row["knn_accuracy"] = acc[emb]
        rows.append(row)
    decision = compare(rows, scores, level=level)
    best = rows[decision["best"]]
    chosen = {"kind": best["kind"], **best["params"]}
    if len(tr) > 1 or "embedding" in candidates[best["candidate"]]:
        chosen["embedding"] = best["embedding"]
    return chosen, rows, decision


def compare(rows: list[dict[str, Any]], scores: dict[int, tuple[np.ndarray, np.ndarray]],
            level: float = 0.95) -> dict[str, Any]:
    """Fill ``rows`` (see :func:`tune`) from ``scores`` (candidate -> (sens, test)
    scores on shared rows): AUROC with DeLong intervals, paired differences to the
    maximum; mark the maximum ``selected`` and return the decision dict."""
    valid = [r for r in rows if r["candidate"] in scores]
    if not valid:
        err = next((r.get("error") for r in rows if r.get("error")), "none")
        raise CurateError(f"no candidate could be evaluated; first error: {err}")
    idx = [r["candidate"] for r in valid]
    auc, cov = delong([scores[i][0] for i in idx], [scores[i][1] for i in idx])
    z = float(norm.ppf(0.5 + level / 2))
    for j, r in enumerate(valid):
        se = float(np.sqrt(max(cov[j, j], 0.0)))
        r["sensitivity"] = float(auc[j])
        r["ci"] = [float(auc[j] - z * se), float(auc[j] + z * se)]
    b = valid.index(select_row(valid))
    tied = []
    for j, r in enumerate(valid):
        d = float(auc[b] - auc[j])
        sd = float(np.sqrt(max(cov[b, b] + cov[j, j] - 2 * cov[b, j], 0.0)))
        r["diff_to_best"], r["diff_ci"] = d, [d - z * sd, d + z * sd]
        r["tied_with_best"] = j != b and d - z * sd <= 0.0
        if r["tied_with_best"]:
            tied.append(r["candidate"])
    best = valid[b]
    best["selected"] = True
    return {"rule": "maximum sensitivity (thesis 003)", "best": best["candidate"],
            "decisive": not tied, "tied": tied, "above_chance": best["ci"][0] > 0.5,
            "level": level, "n_sens": int(len(scores[best["candidate"]][0])),
            "n_test": int(len(scores[best["candidate"]][1]))}


def select_row(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The row with the highest ``sensitivity`` (the earlier ``candidate`` on exact ties);
    rows without one are skipped; a CurateError (with the first error) when none has one."""
    valid = [r for r in rows if r.get("sensitivity") is not None]
    if not valid:
        err = next((r.get("error") for r in rows if r.get("error")), "none")
        raise CurateError(f"no candidate could be evaluated; first error: {err}")
    return max(valid, key=lambda r: (r["sensitivity"], -r["candidate"]))
