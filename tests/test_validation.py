"""The shared argument and array checks (curate.validation): one home, one-line errors."""

import numpy as np
import pytest
import torch

from curate.errors import CurateError
from curate.validation import (check_alpha, check_budget, check_device, check_finite, check_matrix,
                               resolve_device)


def test_check_matrix_accepts_without_copy_and_rejects_bad_input():
    X = np.ones((3, 2), np.float32)
    assert check_matrix(X) is X and check_matrix([[1, 2]], "Y").dtype.kind == "i"
    bad = [([[1, 2], [3]], "not a numeric array"), (np.array([["a"]]), "must be numeric"),
           (np.ones(3), "must be 2-D"), (np.ones((0, 2)), "empty"), (np.ones((2, 0)), "0 columns"),
           (np.array([[1.0, np.nan], [0, 0], [np.inf, 1]]), "2 row\\(s\\) with NaN or inf \\(first: row 0\\)")]
    for value, match in bad:
        with pytest.raises(CurateError, match=match):
            check_matrix(value)
    with pytest.raises(CurateError, match="has 2 features but the scorer was fitted on 3"):
        check_matrix(X, n_features=3)
    # rows whose sum overflows but whose values are finite pass
    big = np.full((2, 4), np.finfo(np.float64).max)
    assert check_matrix(big) is big
    assert check_matrix(np.array([[np.nan]]), finite=False).shape == (1, 1)


def test_check_finite_names_the_image():
    X = np.zeros((4, 2))
    X[2, 1] = np.inf
    X[3, 0] = np.nan
    check_finite(np.arange(4), np.zeros((4, 2)), "set s")
    with pytest.raises(CurateError, match=r"set s has NaN/inf embeddings for 2 image\(s\) \(first: image id 12\)"):
        check_finite(np.array([10, 11, 12, 13]), X, "set s")


@pytest.mark.parametrize("good", [0.05, 1e-9, np.float32(0.5), 0.999])
def test_check_alpha_good(good):
    assert check_alpha(good) == pytest.approx(float(good)) and type(check_alpha(good)) is float


@pytest.mark.parametrize("bad", [0, 1, 1.5, -0.1, True, "0.05", None, float("nan")])
def test_check_alpha_bad(bad):
    with pytest.raises(CurateError, match=r"q must be in \(0, 1\)"):
        check_alpha(bad, "q")


def test_check_budget():
    assert check_budget(3) == 3 and check_budget(np.int64(5), 5) == 5
    for budget, pool, match in [(0, None, "budget must be positive"), (-2, 9, "budget must be positive"),
                                (2.0, None, "budget must be an integer"), (True, 3, "an integer"),
                                (6, 5, "budget 6 is larger than the pool of 5 images")]:
        with pytest.raises(CurateError, match=match):
            check_budget(budget, pool)
    with pytest.raises(CurateError, match="pool of 2 labelled images"):
        check_budget(3, 2, "labelled images")


def test_devices():
    assert [check_device(d) for d in ("auto", "cpu", "cuda", "cuda:1")] == ["auto", "cpu", "cuda", "cuda:1"]
    for bad in ("tpu", "cuda:", "cuda:x", "gpu", 0):
        with pytest.raises(CurateError, match="unknown device"):
            check_device(bad)
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    if torch.cuda.is_available():
        n = torch.cuda.device_count()
        assert resolve_device("cuda:0") == "cuda:0"
        with pytest.raises(CurateError, match=f"only {n} CUDA devices"):
            resolve_device(f"cuda:{n}")
    else:
        with pytest.raises(CurateError, match="CUDA is not available"):
            resolve_device("cuda")
