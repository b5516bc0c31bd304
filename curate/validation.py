"""Argument and array checks shared across curate; each fails with one-line CurateError.

- :func:`check_matrix` -- a 2-D numeric array (optionally finite, of a given width);
- :func:`check_finite` -- embeddings of images, the first bad one named by image id;
- :func:`check_alpha` -- a level in (0, 1);
- :func:`check_budget` -- a positive whole number of picks, at most the pool;
- :func:`check_device` / :func:`resolve_device` -- ``auto``, ``cpu``, ``cuda`` or
  ``cuda:N``; the first checks the spelling only, the second also what the machine has
  (and imports torch).

Pure functions (no I/O); cost O(n d) for the array checks, O(1) otherwise.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from curate.errors import CurateError


def check_matrix(X: Any, name: str = "X", n_features: int | None = None, *,
                 finite: bool = True) -> np.ndarray:
    """``X`` as a 2-D numeric array (no copy when it already is one).

    Raises CurateError for non-numeric, non-2-D or empty input, 0 columns, a column
    count other than ``n_features``, and (``finite``) rows holding NaN/inf. The finite
    check sums each row first (no n x d temporary) and looks closer only at rows whose
    sum is not finite.
    """
    try:
        X = np.asarray(X)
    except Exception as exc:  # ragged lists, a CUDA tensor, ...
        raise CurateError(f"{name} is not a numeric array: {exc}") from None
    if X.dtype == object or not (np.issubdtype(X.dtype, np.number) or X.dtype == bool):
        raise CurateError(f"{name} must be numeric, got dtype {X.dtype}")
    if X.ndim != 2:
        raise CurateError(f"{name} must be 2-D (n_items, n_features), got shape {X.shape}")
    if X.shape[0] == 0:
        raise CurateError(f"{name} is empty (0 rows)")
    if X.shape[1] == 0:
        raise CurateError(f"{name} has 0 columns (features)")
    if n_features is not None and X.shape[1] != n_features:
        raise CurateError(
            f"{name} has {X.shape[1]} features but the scorer was fitted on {n_features}"
        )
    if finite and (np.issubdtype(X.dtype, np.floating) or np.issubdtype(X.dtype, np.complexfloating)):
        with np.errstate(over="ignore", invalid="ignore"):  # a non-finite sum is looked at below
            rowsum = X.sum(axis=1, dtype=np.float64)
        cand = np.flatnonzero(~np.isfinite(rowsum))
        if cand.size:
            bad = cand[~np.isfinite(X[cand]).all(axis=1)]
            if bad.size:
                raise CurateError(
                    f"{name} has {bad.size} row(s) with NaN or inf (first: row {bad[0]})"
                )
    return X


def check_finite(ids: np.ndarray, X: np.ndarray, where: str) -> None:
    """CurateError naming the first image (``ids[i]``) whose embedding row has NaN/inf."""
    bad = ~np.isfinite(X).all(axis=1)
    if bad.any():
        raise CurateError(f"{where} has NaN/inf embeddings for {int(bad.sum())} image(s) "
                          f"(first: image id {int(np.asarray(ids)[bad][0])}); re-embed them")


def check_alpha(alpha: Any, name: str = "alpha") -> float:
    """``alpha`` as a float in (0, 1) (a false-positive rate or test level)."""
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float, np.integer, np.floating)) \
            or not 0.0 < float(alpha) < 1.0:
        raise CurateError(f"{name} must be in (0, 1), got {alpha}")
    return float(alpha)


def check_budget(budget: Any, pool: int | None = None, what: str = "images") -> int:
    """``budget`` as an int: a whole number >= 1 and, given ``pool``, at most ``pool``."""
    if isinstance(budget, bool) or not isinstance(budget, (int, np.integer)):
        raise CurateError(f"budget must be an integer, got {budget!r}")
    if budget <= 0:
        raise CurateError(f"budget must be positive, got {budget}")
    if pool is not None and budget > pool:
        raise CurateError(f"budget {budget} is larger than the pool of {pool} {what}")
    return int(budget)


def check_device(device: Any) -> str:
    """``device`` as a string if it is ``auto``, ``cpu``, ``cuda`` or ``cuda:N``; no torch import."""
    dev = str(device)
    if dev not in ("auto", "cpu", "cuda") and not (dev.startswith("cuda:") and dev[5:].isdigit()):
        raise CurateError(f"unknown device {device!r}; choose auto, cpu, cuda or cuda:N")
    return dev


def resolve_device(device: Any) -> str:
    """The device to run on: ``auto`` -> ``cuda`` when torch sees a GPU, else ``cpu``;
    ``cuda``/``cuda:N`` only when that GPU exists (CurateError otherwise)."""
    dev = check_device(device)
    if dev == "cpu":
        return dev
    import torch

    has_cuda = torch.cuda.is_available()
    if dev == "auto":
        return "cuda" if has_cuda else "cpu"
    if not has_cuda:
        raise CurateError(f"device {device!r} requested but CUDA is not available")
    if dev != "cuda" and int(dev[5:]) >= torch.cuda.device_count():
        raise CurateError(f"device {device!r}: only {torch.cuda.device_count()} CUDA devices")
    return dev


__all__ = ["check_matrix", "check_finite", "check_alpha", "check_budget", "check_device",
           "resolve_device"]
