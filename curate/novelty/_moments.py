"""Running moments and Ledoit-Wolf / OAS shrinkage from them (float64).

Per group g (one group for a single Gaussian, one per class for a shared within-class
covariance) we accumulate, for z = x - s_g with a fixed per-group shift s_g (the group's
mean in the first chunk it appears in; it only improves conditioning):

- ``count`` n_g, ``sum`` sum z (d), ``outer`` sum z z^T (d, d),
- ``quartic`` sum ||z||^4 and ``cubic`` sum ||z||^2 z (d).

With delta = sum/n the group mean in shifted coordinates, the centred scatter is
``C_g = outer - n delta delta^T`` and the fourth moment of the centred rows
(c = ||delta||^2) follows from expanding ||z - delta||^4 = (a - 2b + c)^2 with
a = ||z||^2, b = z.delta::

    Q4_g = sum ||z - delta||^4
         = quartic - 4 cubic.delta + 4 delta^T outer delta + 2 c tr(outer) - 3 n c^2

Pooled over groups: W = sum C_g, N = sum n_g, Q4 = sum Q4_g, S = W / N (the MLE
covariance, as ``sklearn.covariance.empirical_covariance``). Then, with p = d:

- Ledoit-Wolf (sklearn ``ledoit_wolf_shrinkage`` on the centred rows): mu = tr(S)/p,
  delta_ = ||S||_F^2, beta = (Q4/N - delta_) / (p N), delta = (delta_ - p mu^2) / p,
  shrinkage = min(beta, delta) / delta. The fourth moment is only needed through the
  scalar Q4, hence ``quartic`` and ``cubic``.
- OAS (sklearn ``OAS``): alpha = ||S||_F^2 / p^2, shrinkage =
  min((alpha + mu^2) / ((N + 1)(alpha - mu^2 / p)), 1); second moments only.

Shrunk covariance = (1 - shrinkage) S + shrinkage mu I. For one feature both give 0.
"""

from __future__ import annotations

import numpy as np

from curate.errors import CurateError

SHRINKAGES = ("ledoit-wolf", "oas")


def moment_shapes(d: int) -> dict[str, tuple[tuple[int, ...], type]]:
    """Per-group accumulator shapes (without the leading group axis)."""
    return {
        "count_": ((), np.int64),
        "shift_": ((d,), np.float64),
        "sum_": ((d,), np.float64),
        "outer_": ((d, d), np.float64),
        "quartic_": ((), np.float64),
        "cubic_": ((d,), np.float64),
    }


def accumulate(acc: dict[str, np.ndarray], g: int, X: np.ndarray, block: int = 16_384) -> None:
    """Add rows X (n, d) float64 to group g of the stacked accumulators (in place)."""
    if acc["count_"][g] == 0:
        acc["shift_"][g] = X.mean(axis=0)
    shift = acc["shift_"][g]
    for s in range(0, len(X), block):
        Z = X[s : s + block] - shift
        a = np.einsum("ij,ij->i", Z, Z)
        acc["count_"][g] += len(Z)
        acc["sum_"][g] += Z.sum(axis=0)
        acc["outer_"][g] += Z.T @ Z
        acc["quartic_"][g] += float(a @ a)
        acc["cubic_"][g] += a @ Z


def pooled_moments(acc: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, int, float]:
    """(group means (G, d), pooled MLE covariance S (d, d), N, Q4) from accumulators."""
    counts = acc["count_"].astype(np.float64)
    n_tot = int(acc["count_"].sum())
    d = acc["sum_"].shape[1]
    W = np.zeros((d, d))
    q4 = 0.0
    means = np.empty_like(acc["sum_"])
    for g in range(len(counts)):
        n = counts[g]
        if n == 0:
            means[g] = np.nan
            continue
        delta = acc["sum_"][g] / n
        outer = acc["outer_"][g]
        c = float(delta @ delta)
        W += outer - n * np.outer(delta, delta)
        q4 += (
            acc["quartic_"][g]
            - 4.0 * float(acc["cubic_"][g] @ delta)
            + 4.0 * float(delta @ outer @ delta)
            + 2.0 * c * float(np.trace(outer))
            - 3.0 * n * c * c
        )
        means[g] = acc["shift_"][g] + delta
    W = 0.5 * (W + W.T)
    return means, W / n_tot, n_tot, q4


def ledoit_wolf_from_moments(S: np.ndarray, n: int, q4: float) -> float:
    """Ledoit-Wolf shrinkage in [0, 1] from S (MLE covariance), n and Q4 = sum ||z||^4."""
    p = S.shape[0]
    if p == 1:
        return 0.0
    mu = np.trace(S) / p
    delta_ = float(np.sum(S * S))
    beta = (q4 / n - delta_) / (p * n)
    delta = (delta_ - p * mu * mu) / p
    if delta <= 0:
        return 0.0
    beta = min(beta, delta)
    return 0.0 if beta == 0 else float(max(beta, 0.0) / delta)


def oas_from_moments(S: np.ndarray, n: int) -> float:
    """OAS shrinkage in [0, 1] from S (MLE covariance) and n (sklearn's formula)."""
    p = S.shape[0]
    if p == 1:
        return 0.0
    alpha = float(np.mean(S * S))
    mu = np.trace(S) / p
    num = alpha + mu * mu
    den = (n + 1) * (alpha - mu * mu / p)
    return 1.0 if den == 0 else float(min(num / den, 1.0))


def shrunk_covariance(S: np.ndarray, n: int, q4: float, shrinkage) -> tuple[np.ndarray, float]:
    """(shrunk covariance, shrinkage used); ``shrinkage`` is a name or a float in [0, 1]."""
    if isinstance(shrinkage, str):
        if shrinkage == "ledoit-wolf":
            s = ledoit_wolf_from_moments(S, n, q4)
        elif shrinkage == "oas":
            s = oas_from_moments(S, n)
        else:
            raise CurateError(
                f"unknown shrinkage {shrinkage!r}; choose one of: {', '.join(SHRINKAGES)} or a number in [0, 1]"
            )
    else:
        s = float(shrinkage)
        if not 0.0 <= s <= 1.0:
            raise CurateError(f"shrinkage must be in [0, 1], got {s}")
    p = S.shape[0]
    mu = np.trace(S) / p
    cov = (1.0 - s) * S
    cov.flat[:: p + 1] += s * mu
    return cov, s
