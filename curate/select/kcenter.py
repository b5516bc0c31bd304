"""k-center greedy (furthest-point sampling) selection.

Sener & Savarese (2018), "Active Learning for Convolutional Neural Networks: A Core-Set
Approach", ICLR. Pure compute: arrays in, arrays out.

Fast form: a length-N vector ``m`` holds, for every row, the best value over the centres
so far; each step is one matrix-vector product ``X @ c``, an in-place minimum and an
argmax, so a step reads N x d floats once and the loop is memory-bandwidth bound.

- euclidean: ``m_i = min_c (||c||^2 - 2 x_i.c)``; squared distance ``m_i + ||x_i||^2``.
- cosine: ``m_i = min_c (-x_i.c / ||c||)``; ``-max cos = m_i / ||x_i||``, distance
  ``1 - max cos``. (Scaling by a positive per-row constant commutes with the minimum,
  so X is never normalised into a copy.)

Both backends (numpy on CPU; torch on CUDA or CPU) do the same float32 operations in
the same order, so exactly representable data (e.g. integer grids) gives identical
results; ties go to the lowest index (``argmax`` semantics).
"""

from __future__ import annotations

import numpy as np

from curate.errors import CurateError
from curate.validation import check_budget, check_device, check_matrix, resolve_device

METRICS = ("euclidean", "cosine")
BACKENDS = ("auto", "numpy", "torch")
_CHUNK_CPU = 1 << 23    # seeding block entries (32 MB float32): cache-friendly on CPU
_CHUNK_CUDA = 1 << 26   # 256 MB on GPU, fewer kernel launches
_F16_MAX = 65504.0
_F32_SAFE = 8e37        # squared norms above this overflow in ||c||^2 - 2 x.c


def kcenter_greedy(X, budget, seeds=None, metric="euclidean", device="auto", fp16=False,
                   random_state=None, chunk_size=None, backend="auto"):
    """Pick ``budget`` pool rows of ``X`` by k-center greedy (furthest-point sampling).

    Centres start as ``seeds`` (already labelled rows and earlier picks; never picked,
    duplicates allowed); the pool is every other row. Each step picks the pool row
    farthest from its nearest centre (lowest index on ties) and makes it a centre.
    Without seeds the first pick is ``np.random.default_rng(random_state).integers(N)``
    and its distance is ``inf``.

    Args:
        X: array-like (N, d), converted to C-contiguous float32 (no copy if it already is).
        budget: number of picks, 1 <= budget <= pool size.
        seeds: int indices into X, shape (L,), or None.
        metric: "euclidean" (true L2 distance) or "cosine" (1 - max cosine similarity;
            rows must have non-zero norm).
        device: "auto" (CUDA if available, else CPU), "cpu", "cuda" or "cuda:N".
        fp16: store X as float16 on the device (torch backend; products accumulate and
            are compared in float32). Halves memory traffic on GPU; slow on CPU.
        random_state: seed or Generator for the first pick when there are no seeds.
        chunk_size: max entries (rows x seeds) of one seeding block; default 2**23 on
            CPU, 2**26 on CUDA. Seeding never holds more than one block.
        backend: "auto" (numpy on CPU, torch on CUDA or with fp16), "numpy" or "torch".

    Returns:
        indices: int64[budget], the picks in order.
        distances: float32[budget], each pick's distance to its nearest centre at pick
            time, non-increasing after the first pick. euclidean: sqrt of the clamped
            squared distance ``||x||^2 - 2 x.c + ||c||^2`` (float32 rounding: absolute
            error about 1e-3 * ||x|| for near-duplicates, exact for small integers).
            Once every pool row is at distance <= 0 the rest are picked in index order
            at distance 0. Copies of one float row tie only in exact arithmetic (BLAS
            rounds row by row), so which copy is picked may differ between backends.

    Cost: O((budget + L) * N * d) flops; the loop reads N * d * 4 bytes per pick (memory
    bandwidth bound, ~25 ms per pick for N=1M, d=128 on 20 GB/s); seeding from L seeds
    is blocked N x L matrix products (compute bound). Memory: X (plus a float32 copy if
    X is not float32) plus four float32 N-vectors plus one seeding block; N x budget
    and N x L are never materialised.

    Raises:
        CurateError: bad budget, shape, NaN/inf rows, seeds, metric, device or backend.
    """
    X_in = X
    X = _as_matrix(X)
    N = X.shape[0]
    if metric not in METRICS:
        raise CurateError(f"unknown metric {metric!r}; choose one of: {', '.join(METRICS)}")
    seeds = _check_seeds(seeds, N)
    pool = N - np.unique(seeds).size
    budget = check_budget(budget, pool)
    backend, dev = _resolve(device, backend, fp16)
    if chunk_size is None:
        chunk_size = _CHUNK_CUDA if dev.startswith("cuda") else _CHUNK_CPU
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1:
        raise CurateError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    sq = _row_sq_norms(X, X_in, metric)
    first = None if seeds.size else int(np.random.default_rng(random_state).integers(N))
    if backend == "numpy":
        idx, val = _run_numpy(X, sq, budget, seeds, first, metric, int(chunk_size))
    else:
        idx, val = _run_torch(X, sq, budget, seeds, first, metric, int(chunk_size), dev, fp16)
    if metric == "euclidean":
        dist = np.sqrt(np.maximum(val.astype(np.float64), 0.0))
    else:
        dist = np.maximum(1.0 + val.astype(np.float64), 0.0)
    if first is not None:
        dist[0] = np.inf
    return idx.astype(np.int64), dist.astype(np.float32)


# ---------------------------------------------------------------- validation


def _as_matrix(X) -> np.ndarray:
    """C-contiguous float32 (N, d); NaN/inf/overflow are checked by :func:`_row_sq_norms`."""
    arr = check_matrix(X, "embeddings", finite=False)
    with np.errstate(over="ignore", invalid="ignore"):
        return np.ascontiguousarray(arr, dtype=np.float32)


def _check_seeds(seeds, N: int) -> np.ndarray:
    if seeds is None:
        return np.empty(0, np.int64)
    s = np.asarray(seeds)
    if s.size == 0:
        return np.empty(0, np.int64)
    if s.ndim != 1 or not np.issubdtype(s.dtype, np.integer):
        raise CurateError(f"seeds must be a 1-D array of integer row indices, got {s.dtype} {s.shape}")
    bad = np.flatnonzero((s < 0) | (s >= N))
    if bad.size:
        raise CurateError(f"{bad.size} seeds are out of range for {N} embeddings, e.g. {int(s[bad[0]])}")
    return s.astype(np.int64)


def _resolve(device, backend, fp16) -> tuple[str, str]:
    """-> (backend, device string); imports torch only when it may be needed."""
    dev = check_device(device)
    if backend not in BACKENDS:
        raise CurateError(f"unknown backend {backend!r}; choose one of: {', '.join(BACKENDS)}")
    if backend == "numpy" and fp16:
        raise CurateError("fp16 needs the torch backend (backend='torch' or 'auto')")
    if backend == "numpy" and dev.startswith("cuda"):
        raise CurateError("the numpy backend runs on the CPU only; use device='cpu'")
    if backend == "numpy" or (dev == "cpu" and backend == "auto" and not fp16):
        return "numpy", "cpu"
    dev = resolve_device(dev)
    if dev.startswith("cuda"):
        return "torch", dev
    if backend == "auto":
        backend = "torch" if fp16 else "numpy"
    return backend, "cpu"


def _row_sq_norms(X: np.ndarray, X_in, metric: str) -> np.ndarray:
    """float32[N] squared row norms; doubles as the NaN/inf/overflow/zero-norm check."""
    sq = np.einsum("ij,ij->i", X, X)
    bad = np.flatnonzero(~np.isfinite(sq) | (sq > _F32_SAFE))
    if bad.size:
        orig = np.asarray(X_in)[bad]
        nonfinite = bad[~np.isfinite(orig.astype(np.float64)).all(axis=1)] if orig.dtype.kind == "f" else bad[:0]
        if nonfinite.size:
            raise CurateError(f"embeddings contain {nonfinite.size} rows with NaN/inf, e.g. row {nonfinite[0]}")
        raise CurateError(f"embeddings contain {bad.size} rows too large for float32 distances, "
                          f"e.g. row {bad[0]}; rescale them")
    if metric == "cosine":
        zero = np.flatnonzero(sq == 0)
        if zero.size:
            raise CurateError(f"cosine metric needs non-zero embeddings: {zero.size} rows have zero norm, "
                              f"e.g. row {zero[0]}")
    return sq


def _blocks(N: int, L: int, chunk: int):
    """Seed groups of <= chunk // 1024 seeds, each with row slices: rows * seeds <= chunk."""
    ns = min(L, max(1, chunk // 1024))
    nr = min(N, max(1, chunk // ns))
    for a in range(0, L, ns):
        yield slice(a, min(L, a + ns)), [slice(s, min(N, s + nr)) for s in range(0, N, nr)]


# ---------------------------------------------------------------- numpy backend


def _run_numpy(X, sq, budget, seeds, first, metric, chunk):
    N = X.shape[0]
    cos = metric == "cosine"
    inv = 1.0 / np.sqrt(sq) if cos else None  # float32
    m = np.full(N, np.inf, np.float32)
    buf = np.empty(N, np.float32)
    tmp = np.empty(N, np.float32)
    if seeds.size:
        for cols, row_blocks in _blocks(N, len(seeds), chunk):
            sc = seeds[cols]
            St = X[sc].T if cos else (X[sc] * np.float32(-2.0)).T
            for rows in row_blocks:
                G = X[rows] @ St
                if cos:
                    G *= -inv[sc]
                else:
                    G += sq[sc]
                np.minimum(m[rows], G.min(axis=1), out=m[rows])
        m[seeds] = -np.inf

    def add_centre(j):
        if cos:
            np.matmul(X, X[j], out=buf)
            np.multiply(buf, -inv[j], out=buf)
        else:
            np.matmul(X, X[j] * np.float32(-2.0), out=buf)
            np.add(buf, sq[j], out=buf)
        np.minimum(m, buf, out=m)
        m[j] = -np.inf

    idx = np.empty(budget, np.int64)
    val = np.empty(budget, np.float32)
    thr = np.float32(-1.0 if cos else 0.0)
    start = 0
    if first is not None:
        idx[0], val[0], start = first, np.inf, 1
        if budget > 1:
            add_centre(first)
    for t in range(start, budget):
        if cos:
            np.multiply(m, inv, out=tmp)
        else:
            np.add(m, sq, out=tmp)
        j = int(np.argmax(tmp))
        v = tmp[j]
        if not v > thr:  # every pool row is at distance <= 0: clamp, lowest index wins
            j, v = int(np.argmax(tmp > -np.inf)), thr
        idx[t], val[t] = j, v
        if t + 1 < budget:
            add_centre(j)
    return idx, val


# ---------------------------------------------------------------- torch backend


def _run_torch(X, sq, budget, seeds, first, metric, chunk, dev, fp16):
    import torch

    try:
        return _torch_loop(torch, X, sq, budget, seeds, first, metric, chunk, torch.device(dev), fp16)
    except torch.cuda.OutOfMemoryError:
        raise CurateError(f"{X.shape[0]} x {X.shape[1]} embeddings do not fit in GPU memory; "
                          "try fp16=True or device='cpu'") from None


def _torch_loop(torch, X, sq, budget, seeds, first, metric, chunk, dev, fp16):
    N, d = X.shape
    cos = metric == "cosine"
    f32 = torch.float32
    if fp16 and max(float(X.max()), -float(X.min())) > _F16_MAX:
        raise CurateError("embeddings exceed the float16 range (|x| > 65504); use fp16=False")
    if dev.type == "cpu" and not fp16:
        Xt = torch.from_numpy(X)
        sq_t = torch.from_numpy(sq)
    else:
        Xt = torch.empty((N, d), dtype=torch.float16 if fp16 else f32, device=dev)
        step = max(1, (1 << 24) // d)
        for s in range(0, N, step):
            Xt[s:s + step].copy_(torch.from_numpy(X[s:s + step]))
        if fp16:  # norms of the rounded values, accumulated in float32
            sq_t = torch.empty(N, dtype=f32, device=dev)
            for s in range(0, N, step):
                xb = Xt[s:s + step].to(f32)
                sq_t[s:s + step] = (xb * xb).sum(1)
            if cos and bool((sq_t == 0).any()):
                raise CurateError("cosine metric needs non-zero embeddings: some rows round to zero "
                                  "in float16; use fp16=False")
        else:
            sq_t = torch.from_numpy(sq).to(dev)
    inv_t = None
    if cos:  # fp32: the very same 1/||x|| as the numpy backend
        inv_t = torch.rsqrt(sq_t) if fp16 else torch.from_numpy(1.0 / np.sqrt(sq)).to(dev)

    out_dtype = False
    if fp16:
        try:
            out_dtype = torch.mm(Xt[:1], Xt[:1].T, torch.float32).dtype == f32
        except (RuntimeError, TypeError, NotImplementedError):
            out_dtype = False

    def matmul(A, B):  # float32 result of A @ B (B: (d, k))
        if not fp16:
            return A @ B
        if out_dtype:
            return torch.mm(A, B, torch.float32)
        return A.to(f32) @ B.to(f32)

    m = torch.full((N,), float("inf"), dtype=f32, device=dev)
    buf = torch.empty(N, dtype=f32, device=dev)
    tmp = torch.empty(N, dtype=f32, device=dev)
    rstep = max(1, (1 << 22) // d)

    if seeds.size:
        sd = torch.from_numpy(seeds).to(dev)
        for cols, row_blocks in _blocks(N, len(seeds), chunk):
            sc = sd[cols]
            St = Xt.index_select(0, sc).T
            for rows in row_blocks:
                G = matmul(Xt[rows], St)
                if cos:
                    G *= -inv_t[sc]
                else:
                    G *= -2.0
                    G += sq_t[sc]
                m[rows] = torch.minimum(m[rows], G.amin(dim=1))
        m[sd] = float("-inf")

    def add_centre(j):  # j: (1,) long tensor on dev; index_select/gather: no host sync
        c = Xt.index_select(0, j).squeeze(0)
        if fp16 and not out_dtype:
            cf = c.to(f32)
            for s in range(0, N, rstep):
                torch.mv(Xt[s:s + rstep].to(f32), cf, out=buf[s:s + rstep])
        elif fp16:
            buf.copy_(torch.mm(Xt, c.unsqueeze(1), torch.float32).squeeze(1))
        else:
            torch.mv(Xt, c, out=buf)
        if cos:
            buf.mul_(-inv_t.index_select(0, j))
        else:
            buf.mul_(-2.0).add_(sq_t.index_select(0, j))
        torch.minimum(m, buf, out=m)
        m.index_fill_(0, j, float("-inf"))

    idx = torch.empty(budget, dtype=torch.int64, device=dev)
    val = torch.empty(budget, dtype=f32, device=dev)
    thr = torch.tensor(-1.0 if cos else 0.0, dtype=f32, device=dev)
    start = 0
    if first is not None:
        j = torch.tensor([first], dtype=torch.int64, device=dev)
        idx[:1], val[0], start = j, float("inf"), 1
        if budget > 1:
            add_centre(j)
    for t in range(start, budget):  # no host syncs inside the loop
        if cos:
            torch.mul(m, inv_t, out=tmp)
        else:
            torch.add(m, sq_t, out=tmp)
        j = torch.argmax(tmp).view(1)
        v = tmp.gather(0, j)
        ok = v > thr  # else every pool row is at distance <= 0: clamp, lowest index wins
        j = torch.where(ok, j, torch.argmax((tmp > float("-inf")).to(f32)).view(1))
        idx[t:t + 1], val[t:t + 1] = j, torch.where(ok, v, thr)
        if t + 1 < budget:
            add_centre(j)
    return idx.cpu().numpy(), val.cpu().numpy()
