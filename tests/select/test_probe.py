"""The probes' one-scalar scaling: the spread of the labelled rows, not their norm."""

import numpy as np
import pytest
from sklearn.datasets import load_digits

from curate.select.probe import PROBES, MeanNormScaler, fit_probe


def _digits_in_a_cone(eps):
    """sklearn's digits (centred, mean norm 1) scaled by ``eps`` and moved along a new
    axis, then L2-normalised: the same classes in a cone of half-angle ~eps (a briefly
    trained encoder's features look like this)."""
    X, y = load_digits(return_X_y=True)
    X = X - X.mean(0)
    X /= np.linalg.norm(X, axis=1).mean()
    Z = np.c_[X * eps, np.ones(len(X))]
    return Z / np.linalg.norm(Z, axis=1, keepdims=True), y


@pytest.mark.parametrize("name", PROBES.names())
def test_a_narrow_cone_trains_the_probe_as_well_as_the_open_features(name):
    # with the rows' own norm (~1) as the scale, the logistic probe fell to 0.10 (eps
    # 0.03) and the mlp to 0.48; the spread about the mean keeps them at ~0.81
    tr = np.random.default_rng(0).choice(1797, 50, replace=False)
    te = np.setdiff1d(np.arange(1797), tr)
    acc = {}
    for eps in (1.0, 0.03):
        Z, y = _digits_in_a_cone(eps)
        acc[eps] = (fit_probe(name, Z[tr], y[tr], 0).predict(Z[te]) == y[te]).mean()
    assert acc[1.0] > 0.7
    assert acc[0.03] > acc[1.0] - 0.05, acc


def test_scale_is_the_spread_about_the_mean_and_falls_back_to_the_norm():
    Z, _ = _digits_in_a_cone(0.03)
    s = MeanNormScaler().fit(Z)
    assert s.scale_ == pytest.approx(np.linalg.norm(Z - Z.mean(0), axis=1).mean())
    assert s.scale_ < 0.05  # the rows' norm is 1; their spread is ~0.03
    same = np.tile([[3.0, 4.0]], (5, 1))
    assert MeanNormScaler().fit(same).scale_ == pytest.approx(5.0)
    assert MeanNormScaler(per_feature=True).fit(Z).scale_ == pytest.approx(s.scale_ / np.sqrt(65))
