"""Neighbour-based novelty scores on L2-normalised features (cosine similarity).

All keep every reference row (float32, normalised) in ``reference_``; higher score =
more novel.

- ``knn``: minus the cosine similarity to the k-th nearest reference (Sun et al.,
  ICML 2022, "Out-of-distribution detection with deep nearest neighbors"; k = 50 at
  ~50k references). faiss ``IndexFlatIP`` (GPU when available), or ``ivf``/``hnsw``
  for large references. Cost (flat): M*d per query.
- ``max-cosine``: ``S_cs = -max_m exp(cos(f, f_m))`` (thesis 003 ch. 7) is scored as
  ``-max_m cos(f, f_m)``: exp is increasing, so the ranking is the same.
- ``cosine-weighted``: ``S(x) = -(1/M) sum_m exp(cos(f, f_m)/tau)`` (003 ch. 6,
  tau = 0.04) is scored as ``-logsumexp_m(cos/tau) + log M`` = -log(-S): a monotone
  map of S (same ranking) that cannot overflow. Exact over all M references, in
  (query x reference) tiles of bounded memory; each tile is one float32 GEMM with a
  per-query shift folded in ((cos - 1)/tau, or (cos - max cos)/tau for tau < 0.025),
  an in-place exp and a row sum.
  Cost: 2*n*M*d flops + n*M exps.

Scoring the references themselves: ``score_reference()`` or
``score_samples(X_ref, exclude_self=True)`` skip each row's own match (leave-one-out);
``reference_scores_`` (percentiles) are leave-one-out scores of a reference sample.
"""

from __future__ import annotations

import numpy as np

from curate.errors import CurateError
from curate.novelty._base import NoveltyScorer, l2_normalize
from curate.novelty._faiss import build_index, search
from curate.validation import check_matrix


def _drop_self(D: np.ndarray, I: np.ndarray, exclude: np.ndarray, k: int) -> np.ndarray:
    """First k similarities per row after removing the entry whose index is ``exclude``."""
    is_self = I == exclude[:, None]
    order = np.argsort(is_self, axis=1, kind="stable")  # self entry (if any) to the end
    return np.take_along_axis(D, order, axis=1)[:, :k]


class _ReferenceScorer(NoveltyScorer):
    uses_reference = True
    compute_dtype = np.float32
    normalize = True
    min_reference = 2
    _state_attrs = ("reference_", "reference_labels_")

    def _reset_acc(self):
        self.reference_ = None
        self.reference_labels_ = None
        self._chunks: list[np.ndarray] = []
        self._label_chunks: list[np.ndarray] = []
        self._index = None

    def _accumulate(self, Xp, y):
        self._chunks.append(np.ascontiguousarray(Xp, dtype=np.float32))
        if y is not None:
            self._label_chunks.append(y)

    def _finalize_model(self):
        if self._chunks:
            parts = ([self.reference_] if self.reference_ is not None else []) + self._chunks
            self.reference_ = np.ascontiguousarray(np.concatenate(parts))
            if self._label_chunks:
                lp = ([self.reference_labels_] if self.reference_labels_ is not None else [])
                self.reference_labels_ = np.concatenate(lp + self._label_chunks)
            self._chunks, self._label_chunks = [], []
        if len(self.reference_) < self.min_reference:
            raise CurateError(self._too_few_message(len(self.reference_)))
        self._index = None

    def _too_few_message(self, n):
        return f"{self.name} needs at least {self.min_reference} reference rows, got {n}"

    def _after_load(self):
        self._chunks, self._label_chunks, self._index = [], [], None

    def _neighbor_base(self):
        return self.reference_, np.arange(len(self.reference_), dtype=np.int64)

    def _score_sample(self):
        if len(self.sample_index_) == 0:
            return np.empty(0)
        return self._score(self.reference_[self.sample_index_], exclude=self.sample_index_)

    def score_samples(self, X, exclude_self: bool = False) -> np.ndarray:
        """Novelty of each row of X (n, d) -> float64[n]; higher = more novel.

        ``exclude_self=True``: X are the reference rows in fit order (same n) and each
        row's own match is skipped (leave-one-out).
        """
        if not exclude_self:
            return super().score_samples(X)
        self._ensure_ready()
        X = check_matrix(X, "X", self.n_features_in_)
        if len(X) != len(self.reference_):
            raise CurateError(
                f"exclude_self=True needs the {len(self.reference_)} reference rows, got {len(X)}"
            )
        return self._score(self._prepare(X), exclude=np.arange(len(X), dtype=np.int64))

    def score_reference(self, indices=None) -> np.ndarray:
        """Leave-one-out novelty of reference rows (all, or positions ``indices``)."""
        self._ensure_ready()
        idx = (np.arange(len(self.reference_), dtype=np.int64) if indices is None
               else np.asarray(indices, dtype=np.int64))
        if idx.size and (idx.min() < 0 or idx.max() >= len(self.reference_)):
            raise CurateError(f"reference indices must be in [0, {len(self.reference_)})")
        return self._score(self.reference_[idx], exclude=idx)

    def _nearest_class(self, Xp):
        if self.reference_labels_ is None:
            return None, None
        D, I = search(self._get_index(), l2_normalize(Xp), 1)
        return self.reference_labels_[I[:, 0]], D[:, 0]

    def _get_index(self):
        if self._index is None:
            self._index = build_index(self.reference_, "flat", device="cpu")
        return self._index


class KNNScorer(_ReferenceScorer):
    """Minus the cosine similarity to the k-th nearest reference; higher = more novel.

    Parameters: ``k`` (default 50; needs >= k + 1 references); ``index`` "flat"
    (exact) | "ivf" | "hnsw"; ``nlist``/``nprobe`` (ivf), ``hnsw_m``/``ef_search``
    (hnsw); ``device`` "auto" (faiss GPU for flat when available) | "cpu" | "gpu".
    Missing neighbours of approximate indexes count as similarity -1.
    ``explain``'s ``nearest_class`` is the label of the nearest reference (if y was
    given) and ``class_score`` its cosine similarity.
    """

    name = "knn"

    def __init__(self, k: int = 50, index: str = "flat", nlist: int | None = None,
                 nprobe: int = 16, hnsw_m: int = 32, ef_search: int = 128,
                 device: str = "auto", sample_size: int = 10_000,
                 random_state: int | None = 0):
        self.k = k
        self.index = index
        self.nlist = nlist
        self.nprobe = nprobe
        self.hnsw_m = hnsw_m
        self.ef_search = ef_search
        self.device = device
        self.sample_size = sample_size
        self.random_state = random_state

    def _kth(self) -> int:
        k = int(self.k)
        if k < 1:
            raise CurateError(f"k must be >= 1, got {self.k}")
        return k

    @property
    def min_reference(self):
        return self._kth() + 1

    def _too_few_message(self, n):
        k = self._kth()
        return (f"{self.name} with k={k} needs at least {k + 1} reference rows (k + 1 for "
                f"leave-one-out), got {n}; lower k")

    def _get_index(self):
        if self._index is None:
            self._index = build_index(
                self.reference_, self.index, nlist=self.nlist, nprobe=self.nprobe,
                hnsw_m=self.hnsw_m, ef_search=self.ef_search, device=self.device,
                seed=self.random_state,
            )
        return self._index

    def _score(self, Xp, exclude=None):
        k = self._kth()
        if exclude is None:
            D, _ = search(self._get_index(), Xp, k)
        else:
            D, I = search(self._get_index(), Xp, k + 1)
            D = _drop_self(D, I, exclude, k)
        sim = D[:, k - 1]
        return -np.where(np.isnan(sim), -1.0, sim)


class MaxCosineScorer(KNNScorer):
    """Minus the maximum cosine similarity to the references; higher = more novel.

    Same ranking as ``S_cs = -max_m exp(cos)`` (thesis 003 ch. 7). Parameters as
    ``knn`` without ``k`` (k = 1).
    """

    name = "max-cosine"

    def __init__(self, index: str = "flat", nlist: int | None = None, nprobe: int = 16,
                 hnsw_m: int = 32, ef_search: int = 128, device: str = "auto",
                 sample_size: int = 10_000, random_state: int | None = 0):
        super().__init__(1, index, nlist, nprobe, hnsw_m, ef_search, device, sample_size,
                         random_state)
        del self.k

    def _kth(self) -> int:
        return 1

    def _too_few_message(self, n):
        return f"{self.name} needs at least 2 reference rows (leave-one-out), got {n}"


class CosineWeightedScorer(_ReferenceScorer):
    """``-logsumexp_m(cos(f, f_m)/tau) + log M`` over all M references; higher = more
    novel. Same ranking as ``S = -(1/M) sum_m exp(cos/tau)`` (thesis 003 ch. 6).

    Parameters: ``tau`` (default 0.04; 0.02-0.08 worked best), ``query_block`` x
    ``ref_block`` tile size (memory = 4 bytes x tile), ``sample_size``,
    ``random_state``.
    """

    name = "cosine-weighted"

    def __init__(self, tau: float = 0.04, query_block: int = 1024, ref_block: int = 8192,
                 sample_size: int = 10_000, random_state: int | None = 0):
        self.tau = tau
        self.query_block = query_block
        self.ref_block = ref_block
        self.sample_size = sample_size
        self.random_state = random_state

    def _reset_acc(self):
        if not float(self.tau) > 0:
            raise CurateError(f"tau must be > 0, got {self.tau}")
        super()._reset_acc()

    def _score(self, Xp, exclude=None):
        tau = float(self.tau)
        R = self.reference_
        M, d = R.shape
        # per-query shift so every term exp((cos - top)/tau) <= 1: cos <= 1 always, and
        # for tau >= 0.025 the smallest term exp(-2/tau) >= e^-80 is still a normal
        # float32; below that, shift by the largest (non-self) similarity instead.
        if tau >= 0.025:
            top = np.ones(len(Xp))
        elif exclude is None:
            top = search(self._get_index(), Xp, 1)[0][:, 0]
        else:
            D, I = search(self._get_index(), Xp, 2)
            top = _drop_self(D, I, exclude, 1)[:, 0]
        top = np.nan_to_num(top, nan=-1.0)
        Ra = np.empty((M, d + 1), np.float32)
        Ra[:, :d] = R
        Ra[:, d] = 1.0
        out = np.empty(len(Xp))
        qb, rb = max(1, int(self.query_block)), max(1, int(self.ref_block))
        buf = np.empty((qb, rb), np.float32)
        for qs in range(0, len(Xp), qb):
            q = Xp[qs : qs + qb]
            nq = len(q)
            Qa = np.empty((nq, d + 1), np.float32)
            Qa[:, :d] = q / tau  # (cos - top) / tau via one GEMM
            Qa[:, d] = -top[qs : qs + nq] / tau
            total = np.zeros(nq)
            ex = None if exclude is None else exclude[qs : qs + nq]
            for rs in range(0, M, rb):
                Rt = Ra[rs : rs + rb]
                tile = buf[:nq, : len(Rt)] if (nq == qb and len(Rt) == rb) else np.empty((nq, len(Rt)), np.float32)
                np.matmul(Qa, Rt.T, out=tile)
                np.minimum(tile, 0.0, out=tile)  # float error above the top similarity
                np.exp(tile, out=tile)
                if ex is not None:
                    hit = np.flatnonzero((ex >= rs) & (ex < rs + len(Rt)))
                    tile[hit, ex[hit] - rs] = 0.0
                total += tile.sum(axis=1, dtype=np.float64)
            lse = top[qs : qs + nq] / tau + np.log(np.maximum(total, 1e-300))
            out[qs : qs + nq] = -lse + np.log(M - (0 if exclude is None else 1))
        return out
