"""faiss helpers: inner-product indexes on L2-normalised float32 rows.

``build_index`` makes an exact ``IndexFlatIP`` (on GPU when faiss-gpu sees one and
``device`` allows it), an ``IndexIVFFlat`` (inverted lists, ``nprobe`` lists searched)
or an ``IndexHNSWFlat`` graph for large references. Inner product of unit vectors is
cosine similarity.
"""

from __future__ import annotations

import math

import numpy as np

from curate.errors import CurateError

INDEX_KINDS = ("flat", "ivf", "hnsw")
DEVICES = ("auto", "cpu", "gpu")
SEARCH_BATCH = 65_536


def _faiss():
    try:
        import faiss  # noqa: PLC0415
    except ImportError:  # pragma: no cover - faiss is a dependency
        raise CurateError("faiss is not installed; pip install faiss-cpu") from None
    return faiss


def gpu_available() -> bool:
    faiss = _faiss()
    return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0


def build_index(
    R: np.ndarray,
    kind: str = "flat",
    *,
    nlist: int | None = None,
    nprobe: int = 16,
    hnsw_m: int = 32,
    ef_search: int = 128,
    device: str = "auto",
    seed: int | None = 0,
):
    """Index over reference rows R (M, d) float32 (already normalised).

    Cost: flat = none to build, M*d per query; ivf = k-means on <= 256*nlist rows,
    about M*d*nprobe/nlist per query; hnsw = ~M*log(M)*d to build.
    """
    faiss = _faiss()
    if kind not in INDEX_KINDS:
        raise CurateError(f"unknown index {kind!r}; choose one of: {', '.join(INDEX_KINDS)}")
    if device not in DEVICES:
        raise CurateError(f"unknown device {device!r}; choose one of: {', '.join(DEVICES)}")
    R = np.ascontiguousarray(R, dtype=np.float32)
    M, d = R.shape
    if kind == "flat":
        index = faiss.IndexFlatIP(d)
        use_gpu = device == "gpu" or (device == "auto" and gpu_available())
        if use_gpu:
            if not gpu_available():
                raise CurateError("device='gpu' but faiss sees no GPU (install faiss-gpu)")
            index = faiss.index_cpu_to_gpu(faiss.StandardGpuResources(), 0, index)
    elif kind == "ivf":
        nl = int(nlist) if nlist else max(1, int(4 * math.sqrt(M)))
        nl = max(1, min(nl, M // 39 if M >= 39 else 1))
        quantizer = faiss.IndexFlatIP(d)
        index = faiss.IndexIVFFlat(quantizer, d, nl, faiss.METRIC_INNER_PRODUCT)
        index.cp.seed = 0 if seed is None else int(seed)
        rng = np.random.default_rng(seed)
        n_train = min(M, 256 * nl)
        train = R if n_train == M else R[np.sort(rng.choice(M, n_train, replace=False))]
        index.train(train)
        index.nprobe = min(int(nprobe), nl)
        index.referenced_objects = [quantizer]  # keep the quantizer alive
    else:
        index = faiss.IndexHNSWFlat(d, int(hnsw_m), faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efSearch = int(ef_search)
    index.add(R)
    return index


def search(index, Q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(similarities float64[n, k], indices int64[n, k]) in query batches; -1 = none."""
    Q = np.ascontiguousarray(Q, dtype=np.float32)
    D = np.empty((len(Q), k), np.float64)
    I = np.empty((len(Q), k), np.int64)
    if hasattr(index, "hnsw") and index.hnsw.efSearch < k:
        index.hnsw.efSearch = k
    for s in range(0, len(Q), SEARCH_BATCH):
        d_, i_ = index.search(Q[s : s + SEARCH_BATCH], k)
        D[s : s + len(d_)] = d_
        I[s : s + len(i_)] = i_
    D[I < 0] = np.nan
    return D, I


def search_topk(base: np.ndarray, Q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k cosine neighbours of Q among ``base`` (both normalised float32)."""
    return search(build_index(base, "flat", device="cpu"), Q, k)
