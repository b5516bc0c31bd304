"""Small synthetic data shared by the novelty tests (as fixtures: with
``--import-mode=importlib`` test folders are not importable)."""

import numpy as np
import pytest


def _make_blobs(n=300, d=8, k=3, seed=0, spread=0.15):
    """k clusters around directions e_0..e_{k-1} (+0.3 offset, + noise); (X, y)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    centers = np.eye(d)[:k] + 0.3
    X = centers[y] + spread * rng.standard_normal((n, d))
    return X, y


@pytest.fixture
def make_blobs():
    return _make_blobs
