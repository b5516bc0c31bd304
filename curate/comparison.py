"""Embedding sets side by side on the same images, against a baseline: pure core
(arrays in, DataFrames out; no files, database or network). Used by ``curate compare``
(:mod:`curate.compare`) and at the end of ``curate train`` (:mod:`curate.compare_training`).

Every metric is computed on the *same rows* for every set, so each set is compared to
the baseline paired, row by row. Metrics (higher = better for all):

- ``10-NN accuracy``: majority vote of the k = 10 nearest labelled rows by cosine
  similarity (sklearn ``KNeighborsClassifier``, brute force). Cost O(n_train n_test d).
- ``linear probe accuracy``: standardised features, L2 logistic regression (C = 1)
  (:func:`probe_predict`). Cost O(iters n d classes).
  Both on a held-out test part, or out-of-fold over a stratified k-fold (5) split of the
  labelled rows (:func:`cv_outcomes`).
- ``AL <strategy> @<budget>``: test accuracy of the ``logistic`` probe of
  :mod:`curate.select.probe` trained on the picks of the default strategy and of random picks (:func:`curate.select.simulation.simulate_curves`,
  incremental rounds, common random numbers per seed).
- ``OOD AUROC <batch> (<scorer>)``: a novelty scorer (``curate.novelty``, higher = more
  novel) fitted on reference rows scores held-out in-distribution rows (negatives) and
  out-of-distribution rows (positives); AUROC by ``sklearn.metrics.roc_auc_score``.

Intervals (``level`` 0.95): accuracies and AUROCs by a paired percentile bootstrap over
the evaluated rows (``n_boot`` resamples; for an AUROC negatives and positives are
resampled separately), the same resamples for every set, so the interval of the
difference to the baseline is paired. It covers the sampling of the evaluated rows, not
the randomness of training. AL rows: t-interval over seeds, the difference paired by seed.

Verdicts (:mod:`curate.verdict`): better / worse / not distinguishable from the interval of
the paired difference. Each metric is judged on its own (no correction for the number of
metrics: with ten metrics one spurious call in a few comparisons is expected).
"""

from __future__ import annotations

from typing import Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from curate.errors import CurateError

from curate.verdict import finish_table

KNN, PROBE = "10-NN accuracy", "linear probe accuracy"


# ------------------------------------------------------------------------- bootstrap
def _weight_chunks(n: int, n_boot: int, rng: np.random.Generator, chunk: int = 200):
    """Bootstrap weights in chunks: float32 (b, n) resample counts (each row sums to n)."""
    for start in range(0, n_boot, chunk):
        b = min(chunk, n_boot - start)
        idx = rng.integers(0, n, size=(b, n))
        yield np.stack([np.bincount(r, minlength=n) for r in idx]).astype(np.float32)


def weighted_auroc(s_neg, s_pos, w_neg, w_pos) -> np.ndarray:
    """AUROC of scores ``s_pos`` (m,) against ``s_neg`` (n,) (higher = more positive; ties
    count 1/2) under row weights ``w_neg`` (B, n) and ``w_pos`` (B, m): float64 (B,).
    Unit weights give ``roc_auc_score``. Cost O((n + m) log(n + m) + B (n + m))."""
    from scipy import sparse

    s_neg, s_pos = np.asarray(s_neg, float), np.asarray(s_pos, float)
    w_neg, w_pos = np.atleast_2d(w_neg).astype(float), np.atleast_2d(w_pos).astype(float)
    uniq, inv = np.unique(np.concatenate([s_neg, s_pos]), return_inverse=True)
    n, g = len(s_neg), len(uniq)

    def per_group(w, rows):
        m = sparse.csr_matrix((np.ones(len(rows)), (np.arange(len(rows)), rows)),
                              shape=(len(rows), g))
        return np.asarray((m.T @ w.T).T)          # (B, g) weight of each tied group

    neg, pos = per_group(w_neg, inv[:n]), per_group(w_pos, inv[n:])
    below = np.cumsum(neg, axis=1) - neg          # negative weight strictly below each group
    num = (pos * (below + 0.5 * neg)).sum(axis=1)
    return num / (w_neg.sum(axis=1) * w_pos.sum(axis=1))


def _bounds(values: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    a = (1.0 - level) / 2.0
    return np.quantile(values, a, axis=0), np.quantile(values, 1.0 - a, axis=0)


def _rows(metric: str, kind: str, names: list[str], baseline: str, point: np.ndarray,
          boots: np.ndarray, n: int, level: float, interval: str, in_verdict: bool) -> list[dict]:
    """Rows for one metric from point values (S,) and bootstrap values (B, S)."""
    b = names.index(baseline)
    lo, hi = _bounds(boots, level)
    dlo, dhi = _bounds(boots - boots[:, [b]], level)
    return [{"set": s, "metric": metric, "kind": kind, "value": float(point[j]),
             "low": float(lo[j]), "high": float(hi[j]),
             "diff": float(point[j] - point[b]) if j != b else np.nan,
             "diff_low": float(dlo[j]) if j != b else np.nan,
             "diff_high": float(dhi[j]) if j != b else np.nan, "n": int(n),
             "interval": interval, "in_verdict": in_verdict and j != b, "verdict": None}
            for j, s in enumerate(names)]


def accuracy_rows(metric: str, correct: Mapping[str, np.ndarray], baseline: str, *,
                  n_boot: int = 1000, level: float = 0.95, random_state: int = 0) -> list[dict]:
    """Rows for an accuracy from per-row outcomes ``correct[set]`` bool (m,) on shared rows."""
    names = list(correct)
    C = np.stack([np.asarray(correct[s], np.float32) for s in names], axis=1)  # (m, S)
    rng = np.random.default_rng(random_state)
    boots = np.concatenate([(W @ C) / W.sum(axis=1, keepdims=True)
                            for W in _weight_chunks(len(C), n_boot, rng)])
    return _rows(metric, "accuracy", names, baseline, C.mean(axis=0), boots, len(C), level,
                 f"paired bootstrap over {len(C)} rows", True)


def auroc_rows(metric: str, scores: Mapping[str, tuple[np.ndarray, np.ndarray]], baseline: str,
               *, n_boot: int = 1000, level: float = 0.95, random_state: int = 0) -> list[dict]:
    """Rows for an AUROC from ``scores[set] = (in-distribution scores (n,), OOD scores (m,))``
    (higher = more novel; positive = OOD) on shared rows."""
    from sklearn.metrics import roc_auc_score

    names = list(scores)
    neg = {s: np.asarray(scores[s][0], float) for s in names}
    pos = {s: np.asarray(scores[s][1], float) for s in names}
    n, m = len(neg[names[0]]), len(pos[names[0]])
    if n < 2 or m < 2:
        raise CurateError(f"{metric}: an AUROC needs >= 2 rows per side, got {n} and {m}")
    truth = np.r_[np.zeros(n), np.ones(m)]
    point = np.array([roc_auc_score(truth, np.r_[neg[s], pos[s]]) for s in names])
    rng = np.random.default_rng(random_state)
    chunks = []
    for Wn, Wp in zip(_weight_chunks(n, n_boot, rng), _weight_chunks(m, n_boot, rng)):
        chunks.append(np.stack([weighted_auroc(neg[s], pos[s], Wn, Wp) for s in names], axis=1))
    return _rows(metric, "auroc", names, baseline, point, np.concatenate(chunks), n + m, level,
                 f"paired bootstrap over {n} in + {m} out rows", True)


def _t_half(d: np.ndarray, level: float) -> float:
    from scipy import stats

    if len(d) < 2:
        return float("nan")
    return float(stats.t.ppf(0.5 + level / 2, len(d) - 1) * np.std(d, ddof=1) / np.sqrt(len(d)))


def al_rows(curves: Mapping[str, pd.DataFrame], baseline: str, level: float = 0.95) -> list[dict]:
    """Rows ``AL <strategy> @<budget>`` from ``simulate_curves`` results per set (same seeds):
    mean accuracy with a t-interval over seeds (clipped to [0, 1]); difference to the
    baseline paired by seed."""
    names = list(curves)
    base = curves[baseline].set_index(["strategy", "budget", "seed"])["accuracy"].sort_index()
    rows = []
    for (strategy, budget), _ in curves[baseline].groupby(["strategy", "budget"], sort=False):
        b = base.loc[(strategy, budget)].sort_index().to_numpy(float)
        for s in names:
            df = curves[s]
            a = df[(df.strategy == strategy) & (df.budget == budget)].sort_values("seed")
            a = a["accuracy"].to_numpy(float)
            h, d = _t_half(a, level), a - b
            dh = _t_half(d, level)
            rows.append({"set": s, "metric": f"AL {strategy} @{budget}", "kind": "al",
                         "value": a.mean(), "low": max(0.0, a.mean() - h),
                         "high": min(1.0, a.mean() + h),
                         "diff": d.mean() if s != baseline else np.nan,
                         "diff_low": d.mean() - dh if s != baseline else np.nan,
                         "diff_high": d.mean() + dh if s != baseline else np.nan,
                         "n": len(a), "interval": f"t over {len(a)} seeds",
                         "in_verdict": s != baseline and len(a) > 1, "verdict": None})
    return rows


# ------------------------------------------------------------------------- outcomes
def knn_predict(X_train, y_train, X_test, k: int = 10) -> np.ndarray:
    """Labels of ``X_test`` (m, d) by a cosine k-NN majority vote over ``X_train`` (n, d)."""
    from sklearn.neighbors import KNeighborsClassifier

    knn = KNeighborsClassifier(n_neighbors=min(int(k), len(X_train)), metric="cosine",
                               algorithm="brute")
    return knn.fit(X_train, y_train).predict(X_test)


def probe_predict(X_train, y_train, X_test, random_state: int = 0) -> np.ndarray:
    """Labels of ``X_test`` by a linear probe trained on ``X_train``: standardised features,
    L2 logistic regression (C = 1, lbfgs; the usual linear evaluation). Not the ``logistic``
    probe of the AL simulation, whose one-scalar scaling suits 10-100 labels but underfits
    L2-normalised features that occupy a narrow cone (a barely trained encoder's)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if len(np.unique(y_train)) < 2:
        raise CurateError("the linear probe needs labels of at least 2 classes")
    probe = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=1000,
                                                               random_state=random_state))
    return probe.fit(X_train, y_train).predict(X_test)


def labelled_outcomes(Xs_train: Mapping[str, np.ndarray], y_train, Xs_test: Mapping[str, np.ndarray],
                      y_test, k: int = 10, random_state: int = 0) -> dict[str, dict[str, np.ndarray]]:
    """``{metric: {set: correct bool (m,)}}`` for 10-NN and the linear probe, trained on
    the train rows of every set and evaluated on the same test rows."""
    out: dict[str, dict[str, np.ndarray]] = {KNN: {}, PROBE: {}}
    for s in Xs_train:
        out[KNN][s] = knn_predict(Xs_train[s], y_train, Xs_test[s], k) == y_test
        out[PROBE][s] = probe_predict(Xs_train[s], y_train, Xs_test[s], random_state) == y_test
    return out


def cv_outcomes(Xs: Mapping[str, np.ndarray], y, k: int = 10, folds: int = 5,
                random_state: int = 0) -> tuple[dict[str, dict[str, np.ndarray]], int]:
    """Out-of-fold outcomes over a stratified ``folds``-fold split (the same folds for every
    set); classes with fewer rows than folds reduce the fold count (at least 2).
    Returns (``{metric: {set: correct bool (n,)}}``, folds used)."""
    from sklearn.model_selection import StratifiedKFold

    y = np.asarray(y)
    n_splits = int(min(folds, np.bincount(np.unique(y, return_inverse=True)[1]).min()))
    if n_splits < 2:
        raise CurateError("cross-validation needs at least 2 labelled images per class")
    out: dict[str, dict[str, np.ndarray]] = {KNN: {}, PROBE: {}}
    split = list(StratifiedKFold(n_splits, shuffle=True, random_state=random_state).split(y, y))
    for s, X in Xs.items():
        pred_k, pred_p = np.empty_like(y), np.empty_like(y)
        for tr, te in split:
            pred_k[te] = knn_predict(X[tr], y[tr], X[te], k)
            pred_p[te] = probe_predict(X[tr], y[tr], X[te], random_state)
        out[KNN][s], out[PROBE][s] = pred_k == y, pred_p == y
    return out, n_splits


def ood_scores(Xs_ref: Mapping[str, np.ndarray], Xs_in: Mapping[str, np.ndarray],
               Xs_out: Mapping[str, np.ndarray], scorer: str, **params) -> dict[str, tuple]:
    """``{set: (scores of Xs_in[set], scores of Xs_out[set])}`` by ``scorer`` (a
    ``curate.novelty`` name, higher = more novel) fitted on ``Xs_ref[set]``."""
    from curate.novelty import make_scorer

    out = {}
    for s in Xs_ref:
        sc = make_scorer(scorer, **params).fit(Xs_ref[s])
        out[s] = (sc.score_samples(Xs_in[s]), sc.score_samples(Xs_out[s]))
    return out


def al_curves(Xs_pool, y_pool, Xs_test, y_test, budgets: Sequence[int], seeds: int = 5,
              strategies: Sequence[str] | None = None) -> dict[str, pd.DataFrame]:
    """``simulate_curves`` of ``strategies`` (default: the default strategy and random) per set."""
    from curate.select import DEFAULT_STRATEGY
    from curate.select.simulation import simulate_curves

    strategies = list(strategies or (DEFAULT_STRATEGY, "random"))
    return {s: simulate_curves(Xs_pool[s], y_pool, Xs_test[s], y_test, strategies, budgets, seeds,
                               device="cpu") for s in Xs_pool}


# ------------------------------------------------------------------------- all at once
def _sample(rows: np.ndarray, n_max: int, rng: np.random.Generator) -> np.ndarray:
    return np.sort(rng.permutation(rows)[:n_max]) if len(rows) > n_max else rows


def _thread_limited(fn):
    """Run ``fn`` under ``threadpool_limits(threads)`` (keyword ``threads``, default 1)."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args, threads: int | None = 1, **kwargs):
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=threads):
            return fn(*args, **kwargs)
    return wrapper


@_thread_limited
def compare_arrays(X: Mapping[str, np.ndarray], baseline: str, *, y=None, test=None,
                   ood: Mapping[str, np.ndarray] | None = None, knn_k: int = 10, folds: int = 5,
                   scorers: Sequence[str] = ("knn", "mahalanobis"), ood_k: int = 50,
                   al: bool = True, al_budgets: Sequence[int] = (20, 100), al_seeds: int = 5,
                   max_labelled: int = 10000, max_reference: int = 20000, max_eval: int = 5000,
                   n_boot: int = 1000, level: float = 0.95, random_state: int = 0,
                   progress: Callable[[str], None] | None = None) -> tuple[pd.DataFrame, dict]:
    """Compare embedding sets ``X[name]`` (n, d_name), rows = the same n images, to ``X[baseline]``.

    ``y``: int64 (n,) class codes, -1 = unlabelled (None: no labels). ``test``: bool (n,)
    held-out labelled rows (None: out-of-fold over ``folds`` folds; the AL simulation then
    holds out a seeded stratified 20%). ``ood``: ``{name: bool (n,)}`` out-of-distribution
    rows; the reference is every row in none of them: a random 20% (at most ``max_eval``)
    are the in-distribution negatives, the rest (at most ``max_reference``) fit the
    ``scorers``. OOD rows are left out of the labelled metrics. Labelled rows are
    subsampled to ``max_labelled``. Returns (table :data:`curate.verdict.COLUMNS`, info: sizes and what
    was skipped and why). Cost: per set, the k-NN and probe fits (x folds), the AL
    simulation (2 strategies x seeds x budgets) and one scorer fit per OOD batch, plus
    ``n_boot`` bootstrap passes over the evaluated rows. ``threads``: BLAS/OpenMP threads
    (None: as configured); 1 by default: on a shared 2-core CPU the AL simulation ran 3.5x
    faster single-threaded (k-means and small GEMMs gain nothing from threads that wait).
    """
    names = list(X)
    if baseline not in X:
        raise CurateError(f"baseline {baseline!r} is not among the sets: {', '.join(names)}")
    n = len(X[baseline])
    if any(len(v) != n for v in X.values()):
        raise CurateError("every embedding set must hold the same rows")
    say = progress or (lambda _msg: None)
    rng = np.random.default_rng(random_state)
    ood = {k: np.asarray(v, bool) for k, v in (ood or {}).items()}
    in_ood = np.zeros(n, bool)
    for v in ood.values():
        in_ood |= v
    y = np.full(n, -1, np.int64) if y is None else np.asarray(y, np.int64)
    test = np.zeros(n, bool) if test is None else np.asarray(test, bool)
    info: dict = {"n_images": n, "n_labelled": int(((y >= 0) & ~in_ood).sum()), "skipped": []}
    rows: list[dict] = []
    boot = dict(n_boot=n_boot, level=level, random_state=random_state)
    lab = np.flatnonzero((y >= 0) & ~in_ood)
    if test.any():
        tr, te = lab[~test[lab]], lab[test[lab]]
        if len(te) < 2 or len(np.unique(y[tr])) < 2:
            info["skipped"].append("labelled metrics: the test part needs >= 2 labelled images "
                                   "and the rest >= 2 classes")
            tr = te = lab[:0]
    else:
        counts = np.bincount(y[lab]) if len(lab) else np.zeros(0, int)
        lab = lab[counts[y[lab]] >= 2] if len(lab) else lab
        tr = te = lab[:0]
        if len(np.unique(y[lab])) < 2:
            info["skipped"].append("labelled metrics: " + (
                "fewer than 2 classes with >= 2 labelled images" if info["n_labelled"]
                else "no labelled images"))
            lab = lab[:0]
    if len(te):
        tr, te = _sample(tr, max_labelled, rng), _sample(te, max_labelled, rng)
        say(f"10-NN and linear probe on {len(te)} test images")
        outcomes = labelled_outcomes({s: X[s][tr] for s in names}, y[tr],
                                     {s: X[s][te] for s in names}, y[te], knn_k, random_state)
        info.update(labelled_eval="test batch", n_train=len(tr), n_test=len(te))
    elif len(lab):
        lab = _sample(lab, max_labelled, rng)
        say(f"10-NN and linear probe, {folds}-fold cross-validation on {len(lab)} images")
        outcomes, used = cv_outcomes({s: X[s][lab] for s in names}, y[lab], knn_k, folds,
                                     random_state)
        info.update(labelled_eval=f"{used}-fold cross-validation", n_test=len(lab))
        from curate.simulate import stratified_split

        held = stratified_split(y[lab], 0.2, random_state)
        tr, te = lab[~held], lab[held]
    else:
        outcomes = {}
    for metric, correct in outcomes.items():
        rows += accuracy_rows(metric, correct, baseline, **boot)
    budgets = [b for b in al_budgets if b <= len(tr)]
    if al and len(te) and budgets and len(np.unique(y[tr])) >= 2:
        say(f"active-learning simulation, budgets {budgets}, {al_seeds} seeds")
        curves = al_curves({s: X[s][tr] for s in names}, y[tr], {s: X[s][te] for s in names},
                           y[te], budgets, al_seeds)
        rows += al_rows(curves, baseline, level)
        info.update(al_pool=len(tr), al_test=len(te), al_budgets=budgets)
    elif al and len(outcomes):
        info["skipped"].append(f"AL simulation: pool of {len(tr)} labelled images is smaller "
                               f"than the budgets {list(al_budgets)}")
    if ood:
        ref = rng.permutation(np.flatnonzero(~in_ood))
        n_in = min(max_eval, max(2, int(round(0.2 * len(ref)))))
        ev, fit = np.sort(ref[:n_in]), np.sort(ref[n_in:n_in + max_reference])
        if len(fit) < 3:
            raise CurateError(f"too few reference images outside the OOD batches ({len(ref)}); "
                              "an OOD AUROC needs in-distribution images to fit and to test")
        info.update(ood_reference=len(fit), ood_in=len(ev))
        for name, mask in ood.items():
            out = _sample(np.flatnonzero(mask), max_eval, rng)
            if len(out) < 2:
                raise CurateError(f"OOD batch {name!r} has {len(out)} compared image(s); need >= 2")
            for scorer in scorers:
                say(f"OOD AUROC {name} ({scorer})")
                params = {"k": min(ood_k, len(fit) - 1)} if scorer == "knn" else {}
                sc = ood_scores({s: X[s][fit] for s in names}, {s: X[s][ev] for s in names},
                                {s: X[s][out] for s in names}, scorer, **params)
                rows += auroc_rows(f"OOD AUROC {name} ({scorer})", sc, baseline, **boot)
    return finish_table(rows), info


__all__ = ["compare_arrays", "accuracy_rows", "auroc_rows", "al_rows", "weighted_auroc",
           "labelled_outcomes", "cv_outcomes", "ood_scores", "al_curves", "knn_predict",
           "probe_predict", "KNN", "PROBE"]
