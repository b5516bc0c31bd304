"""k-center greedy against an obviously correct brute-force reference, plus properties."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from curate.errors import CurateError
from curate.select.kcenter import kcenter_greedy

# (backend, device); CUDA joins only where present, nothing is skipped without it.
BACKENDS = [("numpy", "cpu"), ("torch", "cpu")]
if torch.cuda.is_available():
    BACKENDS.append(("torch", "cuda"))
METRICS = ["euclidean", "cosine"]


def brute_force_kcenter(X, budget, seeds=None, metric="euclidean", random_state=None):
    """Reference: all centre distances recomputed from scratch in float64 at every step.

    Distances are clamped at 0; ties go to the lowest index; without seeds the first
    pick is ``default_rng(random_state).integers(N)`` with distance inf (the contract).
    """
    X = np.asarray(X, dtype=np.float64)
    if metric == "cosine":
        X = X / np.linalg.norm(X, axis=1, keepdims=True)
    centres = [int(s) for s in (seeds if seeds is not None else [])]
    picks, dists = [], []
    for _ in range(budget):
        if not centres:
            j, dist = int(np.random.default_rng(random_state).integers(len(X))), np.inf
        else:
            C = X[centres]
            if metric == "euclidean":
                D = np.sqrt(((X[:, None, :] - C[None, :, :]) ** 2).sum(axis=2))
            else:
                D = 1.0 - X @ C.T
            near = np.maximum(D.min(axis=1), 0.0)
            near[centres] = -np.inf  # centres are not in the pool
            j = int(np.argmax(near))
            dist = near[j]
        picks.append(j)
        dists.append(dist)
        centres.append(j)
    return np.array(picks, dtype=np.int64), np.array(dists)


def run(X, budget, backend, seeds=None, metric="euclidean", **kw):
    be, dev = backend
    idx, dist = kcenter_greedy(X, budget, seeds=seeds, metric=metric, device=dev, backend=be, **kw)
    assert idx.dtype == np.int64 and idx.shape == (budget,)
    assert dist.dtype == np.float32 and dist.shape == (budget,)
    return idx, dist


def assert_zero_tail(idx, dist, seeds, n):
    """Distance exactly 0 only once every pool row is at distance <= 0 (clamped; float32
    rounding can make a duplicate's squared distance negative): from then on the picks
    are the remaining pool rows in index order."""
    zeros = np.flatnonzero(dist == 0)
    if zeros.size:
        k0 = zeros[0]
        assert np.all(dist[k0:] == 0)
        rest = sorted(set(range(n)) - {int(s) for s in seeds} - set(idx[:k0].tolist()))
        assert idx[k0:].tolist() == rest[:len(idx) - k0]
    return zeros.size


def assert_same(got, ref, rtol=1e-4, atol=1e-5):
    np.testing.assert_array_equal(got[0], ref[0])
    np.testing.assert_allclose(got[1], ref[1], rtol=rtol, atol=atol)


@pytest.mark.parametrize("backend", BACKENDS, ids=lambda b: "-".join(b))
@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("seeds", [None, [4, 17, 17, 60, 0]], ids=["noseeds", "seeds"])
def test_matches_brute_force(backend, metric, seeds):
    X = np.random.default_rng(1).standard_normal((90, 6)).astype(np.float32) * 3 + 1
    got = run(X, 30, backend, seeds=seeds, metric=metric, random_state=7)
    assert_same(got, brute_force_kcenter(X, 30, seeds, metric, random_state=7))


@pytest.mark.parametrize("backend", BACKENDS, ids=lambda b: "-".join(b))
@pytest.mark.parametrize("metric", METRICS)
def test_duplicate_rows(backend, metric):
    """Copies of one row tie exactly only in exact arithmetic: BLAS rounds row by row, so
    which copy is picked may differ from the reference, but the picked rows and their
    distances must match it (exact ties are checked on integer data below)."""
    rng = np.random.default_rng(2)
    base = rng.standard_normal((25, 4)).astype(np.float32)
    X = base[rng.permutation(np.repeat(np.arange(25), 3))]  # every row three times
    seeds = [0, 1]
    n_new = 25 - len({tuple(r) for r in X[seeds]})
    idx, dist = run(X, n_new, backend, seeds=seeds, metric=metric)
    ref_idx, ref_dist = brute_force_kcenter(X, n_new, seeds, metric)
    np.testing.assert_array_equal(X[idx], X[ref_idx])
    np.testing.assert_allclose(dist, ref_dist, rtol=1e-4, atol=1e-5)
    assert len({tuple(r) for r in X[np.r_[seeds, idx]]}) == 25  # every distinct row covered
    # then only copies of centres are left: distance ~0 (float32 rounding), valid picks
    idx_all, dist_all = run(X, len(X) - 2, backend, seeds=seeds, metric=metric)
    np.testing.assert_array_equal(idx_all[:n_new], idx)
    assert sorted(idx_all.tolist()) == list(range(2, len(X)))
    scale = 1e-3 * np.linalg.norm(base, axis=1).max() if metric == "euclidean" else 1e-5
    assert np.all(dist_all[n_new:] <= scale)
    assert assert_zero_tail(idx_all, dist_all, seeds, len(X)) > 0


@pytest.mark.parametrize("backend", BACKENDS, ids=lambda b: "-".join(b))
@pytest.mark.parametrize("seeds", [None, [3, 3, 50]], ids=["noseeds", "seeds"])
def test_exact_ties_integer_grid(backend, seeds):
    """Integer data is exact in float32: the whole order, ties and zeros included, matches."""
    rng = np.random.default_rng(3)
    grid = np.stack(np.meshgrid(*[np.arange(4)] * 3), axis=-1).reshape(-1, 3)
    X = np.concatenate([grid, grid[rng.choice(len(grid), 20)]])[rng.permutation(len(grid) + 20)]
    X = X.astype(np.float32)
    pool = len(X) - len(set(seeds or []))
    got = run(X, pool, backend, seeds=seeds, random_state=5)
    ref = brute_force_kcenter(X, pool, seeds, random_state=5)
    np.testing.assert_array_equal(got[0], ref[0])
    np.testing.assert_array_equal(got[1], ref[1].astype(np.float32))
    assert (got[1] == 0).sum() >= 20  # the tail really is a run of exact ties at zero


@pytest.mark.parametrize("backend", BACKENDS, ids=lambda b: "-".join(b))
@pytest.mark.parametrize("metric", METRICS)
def test_all_rows_identical(backend, metric):
    """Every pool row at distance 0 from the start: lowest index first, seeds never picked."""
    X = np.full((5, 4), 0.5, np.float32)  # exact: norms and cosines are 1
    np.testing.assert_array_equal(run(X, 3, backend, seeds=[0, 2], metric=metric)[0], [1, 3, 4])
    idx, dist = run(X, 5, backend, metric=metric, random_state=1)
    first = np.random.default_rng(1).integers(5)
    np.testing.assert_array_equal(idx, [first] + [i for i in range(5) if i != first])
    np.testing.assert_array_equal(dist[1:], 0)


@pytest.mark.parametrize("backend", BACKENDS, ids=lambda b: "-".join(b))
def test_exact_ties_cosine_axes(backend):
    """Signed axis vectors scaled by powers of two: every cosine is exactly -1, 0 or 1."""
    rows = [s * 2.0**k * np.eye(3)[i] for i in range(3) for s in (1, -1) for k in (0, 1, 3)]
    X = np.array(rows + rows[:5], dtype=np.float32)[np.random.default_rng(4).permutation(23)]
    got = run(X, len(X) - 1, backend, seeds=[6], metric="cosine")
    ref = brute_force_kcenter(X, len(X) - 1, [6], "cosine")
    np.testing.assert_array_equal(got[0], ref[0])
    np.testing.assert_array_equal(got[1], ref[1].astype(np.float32))


@pytest.mark.parametrize("backend", BACKENDS, ids=lambda b: "-".join(b))
@pytest.mark.parametrize("metric", METRICS)
def test_chunked_seeding_equals_one_block(backend, metric):
    rng = np.random.default_rng(5)
    X = rng.standard_normal((400, 8)).astype(np.float32)
    seeds = rng.choice(400, 37, replace=False)
    whole = run(X, 20, backend, seeds=seeds, metric=metric, chunk_size=10**9)
    for chunk in (1, 7, 500):  # 1 and 7: one seed per block and row blocks of 1 and 7
        assert_same(run(X, 20, backend, seeds=seeds, metric=metric, chunk_size=chunk), whole,
                    rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("metric", METRICS)
def test_backends_agree_larger(metric):
    rng = np.random.default_rng(6)
    X = rng.standard_normal((3000, 24)).astype(np.float32)
    seeds = rng.choice(3000, 150, replace=False)
    ref = run(X, 40, BACKENDS[0], seeds=seeds, metric=metric)
    for backend in BACKENDS[1:]:
        assert_same(run(X, 40, backend, seeds=seeds, metric=metric), ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("seeds", [None, [2, 9]], ids=["noseeds", "seeds"])
def test_fp16_matches_reference_on_rounded_data(metric, seeds):
    X = np.random.default_rng(7).standard_normal((120, 8)).astype(np.float32)
    ref = brute_force_kcenter(X.astype(np.float16), 25, seeds, metric, random_state=3)
    for dev in ["cpu"] + (["cuda"] if torch.cuda.is_available() else []):
        got = kcenter_greedy(X, 25, seeds=seeds, metric=metric, device=dev, fp16=True, random_state=3)
        assert_same(got, ref, rtol=1e-4, atol=1e-4)


def test_fp16_out_of_range_is_a_clear_error():
    X = np.ones((10, 3), np.float32)
    X[4, 1] = 1e5
    with pytest.raises(CurateError, match="float16 range"):
        kcenter_greedy(X, 3, device="cpu", fp16=True)


def test_random_first_pick_is_reproducible():
    X = np.random.default_rng(8).standard_normal((50, 3))
    a = kcenter_greedy(X, 10, random_state=11, device="cpu")
    b = kcenter_greedy(X.tolist(), 10, random_state=11, device="cpu")  # lists, float64 are fine
    assert a[0][0] == np.random.default_rng(11).integers(50) and np.isinf(a[1][0])
    assert_same(a, b, rtol=0, atol=0)


def test_auto_device_gives_a_valid_result():
    X = np.arange(40, dtype=np.float32).reshape(20, 2)
    idx, dist = kcenter_greedy(X, 5, seeds=[0], device="auto")
    np.testing.assert_array_equal(idx, brute_force_kcenter(X, 5, [0])[0])


@pytest.mark.parametrize("kwargs, expected", [
    ({"device": "cpu"}, "numpy"),
    ({"device": "cpu", "backend": "numpy"}, "numpy"),
    ({"device": "auto", "backend": "numpy"}, "numpy"),
    ({"device": "cpu", "backend": "torch"}, "torch"),
    ({"device": "cpu", "fp16": True}, "torch"),
    ({"device": "auto"}, "torch" if torch.cuda.is_available() else "numpy"),
])
def test_backend_dispatch(monkeypatch, kwargs, expected):
    import curate.select.kcenter as kc

    called = []
    for name in ("numpy", "torch"):
        real = getattr(kc, f"_run_{name}")
        monkeypatch.setattr(kc, f"_run_{name}", lambda *a, _n=name, _r=real: called.append(_n) or _r(*a))
    kcenter_greedy(np.eye(3, dtype=np.float32), 2, **kwargs)
    assert called == [expected]


def test_cuda_request_without_cuda_is_a_clear_error_or_works():
    X = np.eye(4, dtype=np.float32)
    if torch.cuda.is_available():
        assert sorted(kcenter_greedy(X, 4, device="cuda")[0].tolist()) == [0, 1, 2, 3]
    else:
        with pytest.raises(CurateError, match="CUDA is not available"):
            kcenter_greedy(X, 2, device="cuda")


# ------------------------------------------------------------------ properties

values = st.one_of(st.integers(-3, 3).map(float),  # small ints: many exact ties/duplicates
                   st.floats(-100, 100, width=32).filter(lambda v: v == 0 or abs(v) > 1e-3))


@st.composite
def problems(draw):
    n = draw(st.integers(2, 24))
    d = draw(st.integers(1, 4))
    X = draw(hnp.arrays(np.float32, (n, d), elements=values))
    seeds = draw(st.lists(st.integers(0, n - 1), max_size=n))
    pool = n - len(set(seeds))
    assume(pool >= 1)
    budget = draw(st.integers(1, pool))
    metric = draw(st.sampled_from(METRICS))
    backend = draw(st.sampled_from(BACKENDS[:2]))
    return X, seeds, budget, metric, backend


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problems(), st.integers(0, 2**32 - 1))
def test_properties(problem, random_state):
    X, seeds, budget, metric, backend = problem
    if metric == "cosine":
        assume(np.all(np.abs(X).max(axis=1) > 0))
    idx, dist = run(X, budget, backend, seeds=seeds, metric=metric, random_state=random_state)
    assert len(set(idx.tolist())) == budget  # distinct
    assert not set(idx.tolist()) & set(seeds)  # never a seed
    assert np.all((idx >= 0) & (idx < len(X)))
    body = dist[1:] if not seeds else dist  # no seeds: the first pick is random, at inf
    assert np.isinf(dist[0]) == (not seeds)
    assert np.all(body >= 0) and np.all(np.isfinite(body))
    # k-center greedy distances never increase (exact, not just up to rounding): each
    # row's nearest-centre distance only shrinks as centres are added and the max is
    # then taken over a shrinking pool.
    assert np.all(np.diff(body) <= 0)
    # distance exactly 0 only once every pool row is at distance <= 0 (clamped): from
    # then on the picks are the remaining pool rows in index order
    assert_zero_tail(idx, dist, seeds, len(X))
    # each reported distance is the true one at pick time, and the pick is (up to
    # float32 rounding) the farthest pool row
    X64 = np.asarray(X, np.float64)
    if metric == "cosine":
        X64 /= np.linalg.norm(X64, axis=1, keepdims=True)
    tol = 1e-5 * (1 + (X64**2).sum(1).max()) if metric == "euclidean" else 2e-5
    centres = list(seeds)
    for t, j in enumerate(idx.tolist()):
        if centres:
            C = X64[centres]
            if metric == "euclidean":
                near = ((X64[:, None] - C[None]) ** 2).sum(2).min(1)  # squared
                got = float(dist[t]) ** 2
            else:
                near = np.maximum(1 - X64 @ C.T, 0).min(1)
                got = float(dist[t])
            pool = np.setdiff1d(np.arange(len(X)), centres)
            assert abs(got - near[j]) <= tol
            assert near[j] >= near[pool].max() - 2 * tol
        centres.append(j)


# ------------------------------------------------------------------ bad input

X5 = np.random.default_rng(9).standard_normal((5, 3)).astype(np.float32)
X_nan = X5.copy()
X_nan[3, 1] = np.nan
X_inf = X5.copy()
X_inf[[1, 4], 0] = np.inf
X_zero = X5.copy()
X_zero[2] = 0


@pytest.mark.parametrize("args, kwargs, message", [
    ((X5, 0), {}, "budget must be positive"),
    ((X5, -3), {}, "budget must be positive"),
    ((X5, 2.5), {}, "budget must be an integer"),
    ((X5, 6), {}, "budget 6 is larger than the pool of 5 images"),
    ((X5, 4), {"seeds": [0, 0, 1]}, "budget 4 is larger than the pool of 3 images"),
    ((X5[0], 1), {}, "2-D"),
    ((X5[None], 1), {}, "2-D"),
    ((np.empty((5, 0)), 1), {}, "0 columns"),
    ((np.array([["a", "b"]]), 1), {}, "numeric"),
    ((X_nan, 2), {}, "embeddings contain 1 rows with NaN/inf, e.g. row 3"),
    ((X_inf, 2), {}, "embeddings contain 2 rows with NaN/inf, e.g. row 1"),
    ((X5 * np.float32(1e19), 2), {}, "too large"),
    ((X5.astype(np.float64) * 1e39, 2), {}, "5 rows too large for float32 distances, e.g. row 0"),
    ((X5, 2), {"seeds": [5]}, "out of range"),
    ((X5, 2), {"seeds": [-1]}, "out of range"),
    ((X5, 2), {"seeds": [0.5]}, "integer row indices"),
    ((X5, 2), {"metric": "manhattan"}, "unknown metric 'manhattan'"),
    ((X5, 2), {"device": "tpu"}, "unknown device 'tpu'"),
    ((X5, 2), {"backend": "jax"}, "unknown backend 'jax'"),
    ((X5, 2), {"backend": "numpy", "fp16": True}, "fp16 needs the torch backend"),
    ((X5, 2), {"chunk_size": 0}, "chunk_size"),
    ((X_zero, 2), {"metric": "cosine"}, "1 rows have zero norm, e.g. row 2"),
])
def test_bad_input_raises_curate_error(args, kwargs, message):
    kwargs = {"device": "cpu", **kwargs}
    backends = [kwargs.pop("backend")] if "backend" in kwargs else ["numpy", "torch"]
    for backend in backends:
        with pytest.raises(CurateError) as err:
            kcenter_greedy(*args, backend=backend, **kwargs)
        assert message in str(err.value) and "\n" not in str(err.value)
