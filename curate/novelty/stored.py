"""Stored novelty scorers: fit on the index's embeddings, calibrate, store, load.

The I/O edge of ``curate.novelty`` (the pure compute core).

``fit_scorer`` takes the ok, embedded images of the reference batches (default: all),
holds out a random ``calibration_fraction`` of them as the calibration split (never
part of the reference), fits the scorer on the rest and calibrates a split-conformal
threshold at false-positive rate ``alpha`` on the calibration scores. The state is an
``.npz`` ``<models_dir>/scorers/<name>-<id>.npz`` (written to a temporary name, renamed when
the row is added) with three extra arrays: ``curate_reference_ids`` (image ids in fit
order), ``curate_calibration_ids`` and ``curate_cal_scores``; plus a ``Scorer`` row
(kind, embedding set, parameters, threshold, alpha, calibration summary, versions).

Class-conditional scorers (:data:`curate.novelty.CLASS_CONDITIONAL`) use the
index's labels (``index.labels()``); their reference is the labelled
images, and a split never leaves a class with fewer rows than the scorer needs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from curate.embeddings import load_embeddings, safe_name
from curate.errors import CurateError
from curate.novelty import CLASS_CONDITIONAL, NoveltyScorer, make_scorer, scorer_from_state
from curate.novelty.calibration import ConformalCalibrator
from curate.provenance import add_ids_hashes, versions
from curate.validation import check_alpha, check_finite

_EXTRA = ("curate_reference_ids", "curate_calibration_ids", "curate_cal_scores")


def split_calibration(n: int, fraction: float, seed: int | None, y=None,
                      min_per_class: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """(reference positions, calibration positions), both sorted.

    A random ``round(fraction * n)`` (>= 1) rows go to calibration; with labels ``y``
    a row stays in the reference when moving it would leave its class with fewer than
    ``min_per_class`` reference rows.
    """
    if not 0.0 < float(fraction) < 1.0:
        raise CurateError(f"calibration fraction must be in (0, 1), got {fraction}")
    if n < 2:
        raise CurateError(f"need at least 2 reference images to fit and calibrate, got {n}")
    target = min(max(int(round(fraction * n)), 1), n - 1)
    perm = np.random.default_rng(seed).permutation(n)
    if y is None:
        cal = perm[:target]
    else:
        classes, inv = np.unique(y, return_inverse=True)
        left = np.bincount(inv, minlength=len(classes))
        cal = []
        for i in perm:
            if len(cal) == target:
                break
            if left[inv[i]] - 1 >= min_per_class:
                cal.append(i)
                left[inv[i]] -= 1
        cal = np.asarray(cal, np.int64)
    mask = np.zeros(n, bool)
    mask[cal] = True
    return np.flatnonzero(~mask), np.flatnonzero(mask)


# ------------------------------------------------------------------------ fitting
@dataclass
class FitReport:
    scorer_id: int
    name: str
    kind: str
    embedding_set: str
    params: dict
    threshold: float
    alpha: float
    calibration: dict
    state_path: str

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def fit_scorer(index, ws, kind: str, /, *, name: str | None = None, embeddings: str | None = None,
               reference_batches=None, calibration_fraction: float = 0.1, alpha: float = 0.05,
               seed: int | None = 0, **params: Any) -> FitReport:
    """Fit, calibrate and store a named scorer (see the module doc); returns a FitReport.

    ``params`` go to the scorer's constructor (e.g. ``k=10``, ``tau=0.04``). Everything
    is computed before anything is written; the row and the state file appear together.
    """
    alpha = check_alpha(alpha)
    params = {k: v for k, v in params.items() if v is not None}
    params.setdefault("random_state", seed)
    est = make_scorer(kind, **params)  # unknown kind / bad parameters fail here
    es = index.embedding_set(embeddings)
    set_name, set_id = es.name, es.id
    restrict = index.batch_image_ids(reference_batches)
    labels = index.labels() if kind in CLASS_CONDITIONAL else None
    name = index.new_scorer_name(name, f"{kind}@{set_name}")
    ids, X = load_embeddings(index, set_name, image_ids=restrict)
    where = f"reference ({'batches ' + ', '.join(reference_batches) if reference_batches else 'all batches'})"
    if len(ids) == 0:
        raise CurateError(f"the {where} holds no embedded images in set {set_name}; "
                          "run `curate embed` or check --reference-batch")
    check_finite(ids, X, f"embedding set {set_name}")
    y, n_unlabelled = None, 0
    if labels is not None:
        has = np.array([int(i) in labels for i in ids], bool)
        if not has.any():
            raise CurateError(f"scorer {kind} is class-conditional and needs labels, but none of "
                              f"the {len(ids)} reference images has one (ingest with --labels, "
                              "or pull labels from Label Studio)")
        n_unlabelled = int((~has).sum())
        ids, X = ids[has], X[has]
        y = np.array([labels[int(i)] for i in ids])
    ref, cal = split_calibration(len(ids), calibration_fraction, seed, y, est.min_class_size)
    if alpha < 1.0 / (len(cal) + 1) - 1e-9:  # checked before the (costly) fit
        raise CurateError(f"alpha={alpha:g} is below 1/(n+1)={1 / (len(cal) + 1):.4g} for {len(cal)} "
                          "calibration images; raise --alpha, --calibration-fraction or the reference")
    est.fit(X[ref], None if y is None else y[ref])
    calibrator = ConformalCalibrator(alpha).fit(est.score_samples(X[cal]))
    n_cal = len(cal)
    calibration = {
        "n_cal": n_cal, "n_ref": len(ref), "fraction": float(calibration_fraction), "seed": seed,
        "reference_batches": list(reference_batches) if reference_batches else None,
        "n_unlabelled_dropped": n_unlabelled,
        "n_classes": None if y is None else int(len(np.unique(y[ref]))),
        # split conformal: P(flag | in-distribution) = floor(alpha (n+1)) / (n+1) <= alpha
        "guaranteed_fpr": float(np.floor(alpha * (n_cal + 1) + 1e-9) / (n_cal + 1)),
        "min_alpha": 1.0 / (n_cal + 1),
        # in-sample on the calibration split (optimistic by construction; a sanity check)
        "achieved_fpr_in_sample": calibrator.achieved_fpr(calibrator.cal_scores_),
    }
    add_ids_hashes(calibration, reference_ids_sha256=ids[ref], calibration_ids_sha256=ids[cal])
    state = est.get_state()
    state.update(curate_reference_ids=ids[ref], curate_calibration_ids=ids[cal],
                 curate_cal_scores=calibrator.cal_scores_)
    folder = Path(ws.models_dir) / "scorers"
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{safe_name(name)}.{os.getpid()}.tmp.npz"
    np.savez(tmp, **state)
    try:
        scorer_id, final = index.add_scorer(
            tmp_state=tmp, state_path=lambda i: folder / f"{safe_name(name)}-{i}.npz",
            name=name, kind=kind, embedding_set_id=set_id, params=est.get_params(),
            threshold=float(calibrator.threshold_), alpha=alpha, calibration=calibration,
            versions=versions())
    finally:
        tmp.unlink(missing_ok=True)
    return FitReport(scorer_id, name, kind, set_name, est.get_params(),
                     float(calibrator.threshold_), alpha, calibration, final)


# ------------------------------------------------------------------------ loading
@dataclass
class StoredScorer:
    """A stored scorer loaded back: the fitted estimator, its calibrator and ids."""

    id: int
    name: str
    kind: str
    embedding_set: str
    dim: int
    params: dict
    alpha: float
    threshold: float
    estimator: NoveltyScorer
    calibrator: ConformalCalibrator
    reference_ids: np.ndarray  # int64, fit order
    calibration_ids: np.ndarray
    calibration: dict = field(default_factory=dict)

    def scores(self, ids: np.ndarray, X: np.ndarray) -> np.ndarray:
        """Novelty float64[n] of images ``ids`` with embeddings X (higher = more novel);
        reference images leave-one-out when the scorer keeps the reference."""
        ids = np.asarray(ids, np.int64)
        if X.shape[1] != self.dim:
            raise CurateError(f"dimension mismatch: scorer {self.name} was fitted on {self.dim}-d "
                              f"embeddings, got {X.shape[1]}-d")
        out = np.empty(len(ids))
        in_ref = np.isin(ids, self.reference_ids)
        loo = in_ref & self.estimator.uses_reference
        if (~loo).any():
            out[~loo] = self.estimator.score_samples(X[~loo])
        if loo.any():
            order = np.argsort(self.reference_ids, kind="stable")
            pos = order[np.searchsorted(self.reference_ids[order], ids[loo])]
            out[loo] = self.estimator.score_reference(pos)
        return out

    def calibrator_at(self, alpha: float | None = None) -> ConformalCalibrator:
        """The stored calibrator, or one re-calibrated at ``alpha`` from the stored
        calibration scores (O(n_cal log n_cal))."""
        if alpha is None or alpha == self.alpha:
            return self.calibrator
        return ConformalCalibrator(check_alpha(alpha)).fit(self.calibrator.cal_scores_)

    def decide(self, ids, X, alpha: float | None = None) -> pd.DataFrame:
        """image_id, score, p_value, flagged (at ``alpha``, default the stored one), in_reference."""
        cal = self.calibrator_at(alpha)
        s = self.scores(ids, X)
        return pd.DataFrame({"image_id": np.asarray(ids, np.int64), "score": s,
                             "p_value": cal.p_values(s), "flagged": cal.predict(s),
                             "in_reference": np.isin(ids, self.reference_ids)})


def load_scorer(index, name: str | None = None) -> StoredScorer:
    """Load a stored scorer (by name, default the latest) with its state file."""
    row, es = index.scorer_with_set(name)
    info = dict(id=row.id, name=row.name, kind=row.kind, embedding_set=es.name, dim=es.dim,
                params=dict(row.params or {}), alpha=float(row.alpha), threshold=row.threshold,
                calibration=dict(row.calibration or {}))
    path = Path(row.state_path or "")
    try:
        with np.load(path, allow_pickle=False) as z:
            state = {k: z[k] for k in z.files}
    except (OSError, ValueError) as exc:
        raise CurateError(f"cannot read the state of scorer {info['name']} at {path}: "
                          f"{str(exc).splitlines()[0]}") from None
    if any(k not in state for k in _EXTRA):
        raise CurateError(f"{path} is not a curate scorer state (missing reference ids)")
    est = scorer_from_state({k: v for k, v in state.items() if k not in _EXTRA})
    if int(est.n_features_in_) != info["dim"]:
        raise CurateError(f"dimension mismatch: scorer {info['name']} state is {est.n_features_in_}-d "
                          f"but embedding set {info['embedding_set']} is {info['dim']}-d")
    cal = ConformalCalibrator(info["alpha"]).fit(state["curate_cal_scores"])
    return StoredScorer(**info, estimator=est, calibrator=cal,
                        reference_ids=state["curate_reference_ids"].astype(np.int64),
                        calibration_ids=state["curate_calibration_ids"].astype(np.int64))


def load_for_scorer(index, st: StoredScorer, embeddings: str | None = None,
                    batch: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Embeddings of ok images (of ``batch``) from the scorer's set; another set is refused."""
    if embeddings is not None and embeddings != st.embedding_set:
        dim = index.embedding_set(embeddings).dim
        if dim != st.dim:
            raise CurateError(f"dimension mismatch: scorer {st.name} was fitted on set "
                              f"{st.embedding_set} ({st.dim}-d), set {embeddings} is {dim}-d")
        raise CurateError(f"scorer {st.name} was fitted on set {st.embedding_set}; scores on "
                          f"set {embeddings} would compare different spaces")
    ids, X = load_embeddings(index, st.embedding_set, batch=batch)
    if len(ids) == 0:
        raise CurateError((f"batch {batch!r} has" if batch else "the index has")
                          + f" no embedded images in set {st.embedding_set}; run `curate embed`")
    check_finite(ids, X, f"embedding set {st.embedding_set}")
    return ids, X


__all__ = ["fit_scorer", "load_scorer", "load_for_scorer", "FitReport", "StoredScorer",
           "split_calibration"]
