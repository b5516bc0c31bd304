"""Shared machinery of the novelty scorers: input checks, the fit/partial_fit life
cycle, the reference sample behind score percentiles, ``explain`` and plain-array
state.

Every scorer follows one contract (sklearn-like): parameters in ``__init__``,
``fit(X_ref, y=None)`` returns self, learned state ends in ``_``, and
``score_samples(X)`` returns float64[n] where **higher = more novel**.

Life cycle. ``partial_fit`` validates a chunk, updates the scorer's running
accumulators and a reservoir sample of at most ``sample_size`` reference rows
(uniform over everything seen, reproducible from ``random_state`` whatever the
chunking). Derived state (covariance, Cholesky factor, index, ...) is computed lazily
by ``_finalize`` on the first score after new data, so ``fit(X)`` equals
``partial_fit`` over any chunking of X. ``reference_scores_`` holds the scores of the
sampled reference rows (leave-one-out for neighbour scorers, in-sample otherwise),
computed on first use (``explain``, ``score_percentile``, ``get_state``); they are the
reference distribution behind percentiles.
"""

from __future__ import annotations

import inspect
import json
from typing import Any

import numpy as np

from curate.errors import CurateError
from curate.validation import check_matrix

EPS = 1e-12
FIT_CHUNK_ROWS = 65_536


# --------------------------------------------------------------------------- checks
def check_labels(y: Any, n: int, name: str = "y") -> np.ndarray:
    """Validate labels: 1-D, length ``n``, no missing values; str/object -> str dtype."""
    y = np.asarray(y)
    if y.ndim != 1:
        raise CurateError(f"{name} must be 1-D, got shape {y.shape}")
    if len(y) != n:
        raise CurateError(f"{name} has {len(y)} labels but X has {n} rows")
    if y.dtype == object:
        if any(v is None for v in y):
            raise CurateError(f"{name} has missing labels (None)")
        y = y.astype(str)
    if np.issubdtype(y.dtype, np.floating) and not np.isfinite(y).all():
        raise CurateError(f"{name} has NaN/inf labels")
    return y


def l2_normalize(X: np.ndarray, dtype=np.float32) -> np.ndarray:
    """Row-wise L2 normalisation into a new ``dtype`` array (zero rows stay zero)."""
    X = np.array(X, dtype=dtype, copy=True)
    norms = np.sqrt(np.einsum("ij,ij->i", X, X))
    X /= np.maximum(norms, EPS)[:, None]
    return X


def _to_python(v: Any) -> Any:
    if isinstance(v, np.ndarray) and v.ndim == 0:
        return v.item()
    if isinstance(v, np.generic):
        return v.item()
    return v


# ---------------------------------------------------------------------- base class
class NoveltyScorer:
    """Base class of all novelty scorers. Scores: higher = more novel.

    Subclasses set ``name``, ``_state_attrs`` (learned arrays/scalars saved by
    ``get_state``) and implement ``_reset_acc``, ``_accumulate``, ``_finalize_model``
    and ``_score``; optionally ``_nearest_class`` for ``explain``.
    """

    name = "base"
    _state_attrs: tuple[str, ...] = ()
    #: keeps every reference row in ``reference_`` (neighbour scorers)
    uses_reference = False
    #: minimum number of samples per class (class-conditional scorers)
    min_class_size = 1
    #: dtype of the prepared (normalised) rows given to _accumulate/_score
    compute_dtype = np.float64
    #: whether rows are L2-normalised (subclasses with a ``normalize`` param override)
    normalize = True
    sample_size = 10_000
    random_state: int | None = 0

    # -- params --------------------------------------------------------------
    @classmethod
    def _param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return [p for p in sig.parameters if p != "self"]

    def get_params(self) -> dict[str, Any]:
        """Constructor parameters (JSON-serialisable)."""
        return {p: getattr(self, p) for p in self._param_names()}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    # -- life cycle -----------------------------------------------------------
    def _reset(self) -> None:
        if not (isinstance(self.sample_size, (int, np.integer)) and self.sample_size >= 0):
            raise CurateError(f"sample_size must be an integer >= 0, got {self.sample_size!r}")
        for attr in list(vars(self)):
            if attr.endswith("_") and not attr.startswith("__"):
                delattr(self, attr)
        self._rng = np.random.default_rng(self.random_state)
        self._dirty = True
        self.n_samples_seen_ = 0
        self.has_labels_ = None
        self.sample_keys_ = np.empty(0, np.float64)
        self.sample_index_ = np.empty(0, np.int64)
        if not self.uses_reference:
            self.sample_ = None
        self._reset_acc()

    def fit(self, X, y=None):
        """Fit on reference rows X (n, d) [and labels y (n,)]; returns self.

        Processes X in row blocks, so memory is X plus one block; equals
        ``partial_fit`` over any chunking of X.
        """
        X = check_matrix(X, "X")
        if y is not None:
            y = check_labels(y, len(X))
        self._reset()
        for s in range(0, len(X), FIT_CHUNK_ROWS):
            self._partial(X[s : s + FIT_CHUNK_ROWS], None if y is None else y[s : s + FIT_CHUNK_ROWS])
        self._ensure_ready()
        return self

    def partial_fit(self, X, y=None):
        """Add reference rows X (n, d) [with labels y]; returns self.

        Give y in every call or in none. Derived state is recomputed on the next score.
        """
        if not getattr(self, "_initialized", False):
            self._reset()
        X = check_matrix(X, "X", getattr(self, "n_features_in_", None))
        if y is not None:
            y = check_labels(y, len(X))
        self._partial(X, y)
        return self

    def _partial(self, X: np.ndarray, y: np.ndarray | None) -> None:
        if not hasattr(self, "n_features_in_"):
            self.n_features_in_ = X.shape[1]
        elif X.shape[1] != self.n_features_in_:
            raise CurateError(
                f"X has {X.shape[1]} features but the scorer was fitted on {self.n_features_in_}"
            )
        has = y is not None
        if self.has_labels_ is None:
            self.has_labels_ = has
        elif self.has_labels_ != has:
            raise CurateError("give y in every partial_fit call or in none")
        self._initialized = True
        Xp = self._prepare(X)
        self._update_sample(Xp)
        self._accumulate(Xp, y)
        self.n_samples_seen_ += len(X)
        self._dirty = True

    def _prepare(self, X: np.ndarray) -> np.ndarray:
        if self.normalize:
            return l2_normalize(X, self.compute_dtype)
        return np.asarray(X, dtype=self.compute_dtype)

    def _update_sample(self, Xp: np.ndarray) -> None:
        """Reservoir by random keys: keep the rows with the smallest uniform keys."""
        keys = self._rng.random(len(Xp))
        idx = np.arange(self.n_samples_seen_, self.n_samples_seen_ + len(Xp), dtype=np.int64)
        all_keys = np.concatenate([self.sample_keys_, keys])
        all_idx = np.concatenate([self.sample_index_, idx])
        keep = np.argsort(all_keys, kind="stable")[: self.sample_size]
        keep.sort()  # keep fit order
        if not self.uses_reference:
            n_old = len(self.sample_keys_)
            old = self.sample_ if self.sample_ is not None else np.empty((0, Xp.shape[1]), np.float32)
            new = Xp[keep[keep >= n_old] - n_old].astype(np.float32)
            self.sample_ = np.ascontiguousarray(np.concatenate([old[keep[keep < n_old]], new]))
        self.sample_keys_ = all_keys[keep]
        self.sample_index_ = all_idx[keep]

    def _check_fitted(self) -> None:
        if not getattr(self, "_initialized", False):
            raise CurateError(f"{self.name} scorer is not fitted; call fit(X_ref) first")

    def _ensure_ready(self) -> None:
        self._check_fitted()
        if self._dirty:
            self._finalize_model()
            self._reference_scores = None
            self._dirty = False

    @property
    def reference_scores_(self) -> np.ndarray:
        """Scores float64[<= sample_size] of the sampled reference rows, computed on
        first use (leave-one-out for neighbour scorers, in-sample otherwise)."""
        self._ensure_ready()
        if getattr(self, "_reference_scores", None) is None:
            self._reference_scores = np.asarray(self._score_sample(), dtype=np.float64)
        return self._reference_scores

    @reference_scores_.setter
    def reference_scores_(self, value) -> None:
        self._reference_scores = None if value is None else np.asarray(value, dtype=np.float64)

    def _score_sample(self) -> np.ndarray:
        """Scores of the sampled reference rows (in-sample by default)."""
        if self.sample_ is None or len(self.sample_) == 0:
            return np.empty(0, np.float64)
        return self._score(self._prepare_stored(self.sample_))

    def _prepare_stored(self, rows: np.ndarray) -> np.ndarray:
        return np.asarray(rows, dtype=self.compute_dtype)

    # -- scoring --------------------------------------------------------------
    def score_samples(self, X) -> np.ndarray:
        """Novelty score of each row of X (n, d) -> float64[n]; higher = more novel.

        Rows are prepared (normalised) and scored in blocks of 65,536.
        """
        self._ensure_ready()
        X = check_matrix(X, "X", self.n_features_in_)
        out = np.empty(len(X), np.float64)
        for s in range(0, len(X), FIT_CHUNK_ROWS):  # memory: one prepared block
            out[s : s + FIT_CHUNK_ROWS] = self._score(self._prepare(X[s : s + FIT_CHUNK_ROWS]))
        return out

    def score_percentile(self, scores) -> np.ndarray:
        """Percent of sampled reference scores <= each score (NaN without a sample)."""
        self._ensure_ready()
        ref = np.sort(self.reference_scores_)
        s = np.asarray(scores, dtype=np.float64)
        if len(ref) == 0:
            return np.full(s.shape, np.nan)
        return 100.0 * np.searchsorted(ref, s, side="right") / len(ref)

    def _neighbor_base(self) -> tuple[np.ndarray, np.ndarray]:
        """(rows, their indices in fit order) searched by ``explain``."""
        if self.sample_ is None:
            return np.empty((0, self.n_features_in_), np.float32), np.empty(0, np.int64)
        return self.sample_, self.sample_index_

    def _nearest_class(self, Xp: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None]:
        return None, None

    def explain(self, X, k: int = 5) -> dict[str, Any]:
        """Why each row of X scores as it does (higher score = more novel).

        Returns a dict of arrays over the n rows of X:
        ``score`` float64[n]; ``percentile`` float64[n] (percent of sampled reference
        scores <= score); ``neighbor_index`` int64[n, k] (positions in fit order of the
        nearest reference rows; -1 if fewer exist) and ``neighbor_similarity``
        float64[n, k] (their cosine similarity); ``neighbors_from`` ("reference" = all
        reference rows, "sample" = the reservoir sample of at most ``sample_size``
        rows); ``nearest_class`` (labels[n] or None) and ``class_score`` (float64[n] or
        None: the scorer's own distance/score for that class, see the scorer).
        """
        from curate.novelty._faiss import search_topk

        self._ensure_ready()
        X = check_matrix(X, "X", self.n_features_in_)
        if int(k) < 1:
            raise CurateError(f"k must be >= 1, got {k}")
        Xp = self._prepare(X)
        scores = np.asarray(self._score(Xp), dtype=np.float64)
        base, base_idx = self._neighbor_base()
        q = l2_normalize(Xp, np.float32)
        kk = min(int(k), len(base))
        sims = np.full((len(X), int(k)), np.nan)
        nidx = np.full((len(X), int(k)), -1, np.int64)
        if kk > 0:
            b = base if self.uses_reference else l2_normalize(base, np.float32)
            D, I = search_topk(b, q, kk)
            sims[:, :kk] = D
            nidx[:, :kk] = np.where(I >= 0, base_idx[np.maximum(I, 0)], -1)
        cls, cscore = self._nearest_class(Xp)
        return {
            "score": scores,
            "percentile": self.score_percentile(scores),
            "neighbor_index": nidx,
            "neighbor_similarity": sims,
            "neighbors_from": "reference" if self.uses_reference else "sample",
            "nearest_class": cls,
            "class_score": cscore,
        }

    # -- state ----------------------------------------------------------------
    _base_state = ("n_features_in_", "n_samples_seen_", "has_labels_", "sample_keys_",
                   "sample_index_", "sample_", "reference_scores_")

    def get_state(self) -> dict[str, Any]:
        """Learned state as plain numpy arrays/scalars (np.savez-able, no pickle).

        Keys: ``scorer`` (registry name), ``params`` (JSON of the constructor
        parameters) and every learned attribute (names end in ``_``), including the
        running accumulators so ``partial_fit`` can continue after ``from_state``.
        """
        self._ensure_ready()
        state: dict[str, Any] = {"scorer": self.name,
                                 "params": json.dumps(self.get_params(), default=_to_python)}
        for attr in self._base_state + self._state_attrs:
            v = getattr(self, attr, None)
            if v is None:
                continue
            state[attr] = v
        return state

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> "NoveltyScorer":
        """Rebuild a fitted scorer from ``get_state()`` output (or a loaded .npz)."""
        name = str(_to_python(state.get("scorer", "")))
        klass = cls
        if cls is NoveltyScorer or getattr(cls, "name", None) != name:
            from curate.novelty import SCORERS

            klass = SCORERS.get(name)
        params = json.loads(str(_to_python(state["params"])))
        obj = klass(**params)
        obj._reset()
        for attr in obj._base_state + obj._state_attrs:
            if attr in state:
                v = state[attr]
                v = _to_python(v) if np.ndim(v) == 0 else np.asarray(v)
                setattr(obj, attr, v)
        obj._rng = np.random.default_rng(obj.random_state)
        obj._rng.bit_generator.advance(int(obj.n_samples_seen_))  # resume the reservoir keys
        obj._initialized = True
        obj._dirty = False
        obj._after_load()
        return obj

    def _after_load(self) -> None:
        """Rebuild non-array state (indexes, factors) after ``from_state``."""

    # -- to implement ---------------------------------------------------------
    def _reset_acc(self) -> None:
        raise NotImplementedError

    def _accumulate(self, Xp: np.ndarray, y: np.ndarray | None) -> None:
        raise NotImplementedError

    def _finalize_model(self) -> None:
        raise NotImplementedError

    def _score(self, Xp: np.ndarray) -> np.ndarray:
        raise NotImplementedError
