"""Batch shift tests: calibrated flag count, kernel MMD, Benjamini-Hochberg.

``calibrated_flag_test`` - the number of batch scores above a conformal threshold
(the k-th smallest of n calibration scores) is exactly Beta-Binomial(m, n + 1 - k, k)
under exchangeability, so its p-value holds the level for any calibration size; a
binomial test against alpha does not (every flag shares one estimated threshold).

``mmd_test`` - unbiased MMD^2 (Gretton et al., JMLR 2012) with an RBF kernel
``k(a, b) = exp(-||a - b||^2 / (2 sigma^2))``, sigma = median pairwise distance of a
pooled subsample (<= 1000 rows), and a permutation test with
``p = (1 + #{perm >= obs}) / (B + 1)`` (never 0). The reference is subsampled to
``max_ref`` (10k) rows and the batch to ``max_batch`` rows (``random_state``).

Speed trick (exact, all N = m + n pooled rows, no N x N matrix kept): with a the 0/1
indicator of the batch group and K the pooled kernel matrix (diagonal 1), every
permutation's MMD^2 follows from ``a^T K a`` and ``a^T r`` (r = K 1):
S_YY = a^T K a - n, S_XY = a^T r - a^T K a, S_XX = 1^T K 1 - N - S_YY - 2 S_XY.
All B + 1 indicator vectors (column 0 = the observed split) form A (N, B+1) float32,
and ``diag(A^T K A)`` is accumulated over row blocks of K computed on the fly, using
symmetry (block row I, columns >= I; off-diagonal blocks doubled):
``sum((K_I,>=I @ A_>=I) * A_I)``. That is float32 GEMMs of N^2 (B + 1) flops plus
N^2 d for the kernel: for N = 12k, B = 1000, d = 128 about 1.6e11 flops, ~1-2 s on
2 cores at ~130 GFLOP/s, with <= 50 MB per block plus 48 MB for A (timed in
``benchmarks/novelty.py``). The observed statistic goes through the same arithmetic
as the permutations, so float32 rounding cannot bias the comparison.

Effect size: ``MMD / sqrt(2 (1 - mean k(x, x')))``: the distance between the kernel
mean embeddings relative to the typical distance of two reference rows in the
kernel feature space (0 = same distribution, ~1 = as far apart as two random
reference rows).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.spatial.distance import pdist
from scipy.stats import betabinom, false_discovery_control

from curate.errors import CurateError
from curate.validation import check_alpha, check_matrix

ROW_BLOCK = 1024


def calibrated_flag_test(n_flagged: int, n_batch: int, n_cal: int, rank: int) -> dict[str, Any]:
    """Exact test that a batch has more flags than a calibrated threshold allows.

    The threshold is the ``rank``-th smallest of ``n_cal`` in-distribution calibration
    scores, c_(rank), and an item is flagged when its score is > c_(rank). If the
    calibration scores and the batch's ``n_batch`` scores are exchangeable (no shift),
    the share of in-distribution scores above c_(rank) is Beta(n_cal + 1 - rank, rank)
    and the batch's flag count is Beta-Binomial(n_batch, n_cal + 1 - rank, rank)
    (the coverage law of a split-conformal threshold: Vovk 2012, "Conditional validity
    of inductive conformal predictors"; Angelopoulos & Bates 2021, "A gentle
    introduction to conformal prediction"). One-sided p = P(count >= n_flagged).
    Ties (discrete scores) only lower the strict count below its value under random
    tie-breaking, so the test stays valid (conservative).

    Unlike a binomial test of the flags against alpha, this accounts for the one
    threshold all flags share: a small calibration set gives a threshold whose true
    flag rate varies by about sqrt(alpha (1 - alpha) / n_cal) around alpha, and that
    variation is part of the null distribution here. Cost O(1).

    Returns {p_value, flagged_fraction, expected, n_flagged, n, n_cal, threshold_rank,
    test, effect}; ``expected`` = (n_cal + 1 - rank) / (n_cal + 1), the mean flag rate.
    """
    n_flagged, n_batch, n_cal, rank = int(n_flagged), int(n_batch), int(n_cal), int(rank)
    if n_batch <= 0:
        raise CurateError("the flag-count test needs at least one batch item")
    if not 0 <= n_flagged <= n_batch:
        raise CurateError(f"n_flagged must be in [0, {n_batch}], got {n_flagged}")
    if n_cal < 1 or not 1 <= rank <= n_cal:
        raise CurateError(f"threshold rank must be in [1, n_cal={n_cal}], got {rank}")
    a, b = n_cal + 1 - rank, rank
    p = float(betabinom.sf(n_flagged - 1, n_batch, a, b)) if n_flagged > 0 else 1.0
    frac, expected = n_flagged / n_batch, a / (n_cal + 1)
    return {"p_value": min(1.0, max(p, 0.0)), "flagged_fraction": frac, "expected": expected,
            "n_flagged": n_flagged, "n": n_batch, "n_cal": n_cal, "threshold_rank": rank,
            "test": f"beta-binomial({n_batch}, {a}, {b})",
            "effect": f"{100 * frac:.1f}% flagged vs {100 * expected:.1f}% expected"}


def calibrator_flag_test(cal, batch_scores) -> dict[str, Any]:
    """:func:`calibrated_flag_test` of ``batch_scores`` (float[m]) against a fitted
    ``ConformalCalibrator``: n_cal and the threshold's rank come from its sorted
    calibration scores (rank = #{cal <= threshold}, exact also with ties)."""
    flags = cal.predict(batch_scores)
    rank = int(np.searchsorted(cal.cal_scores_, cal.threshold_, side="right"))
    return calibrated_flag_test(int(flags.sum()), len(flags), int(cal.n_), rank)


def median_bandwidth(Z: np.ndarray, max_rows: int = 1000, rng=None) -> float:
    """Median pairwise Euclidean distance of (a subsample of) Z; 1.0 if it is 0."""
    rng = np.random.default_rng(rng)
    if len(Z) > max_rows:
        Z = Z[rng.choice(len(Z), max_rows, replace=False)]
    med = float(np.median(pdist(np.asarray(Z, np.float64))))
    return med if med > 0 else 1.0


def _subsample(X, cap, rng):
    if cap is not None and len(X) > cap:
        return X[np.sort(rng.choice(len(X), int(cap), replace=False))]
    return X


def mmd_test(ref_X, batch_X, *, n_permutations: int = 1000, max_ref: int | None = 10_000,
             max_batch: int | None = 10_000, bandwidth: float | None = None,
             random_state: int | None = 0, row_block: int = ROW_BLOCK) -> dict[str, Any]:
    """Permutation test of equal distributions with the unbiased MMD^2 (RBF kernel).

    ``ref_X`` (m, d) and ``batch_X`` (n, d), features as given (no normalisation).
    Returns {statistic (MMD^2, unbiased, may be < 0), p_value, n_permutations,
    bandwidth, effect_size, mmd, n_ref, n_batch}. Cost: O(N^2 (d + B)) flops,
    O(N B) memory.
    """
    X = check_matrix(ref_X, "reference")
    Y = check_matrix(batch_X, "batch", X.shape[1])
    B = int(n_permutations)
    if B < 1:
        raise CurateError(f"n_permutations must be >= 1, got {n_permutations}")
    if len(X) < 2 or len(Y) < 2:
        raise CurateError(f"MMD needs >= 2 rows on each side, got {len(X)} and {len(Y)}")
    rng = np.random.default_rng(random_state)
    X = _subsample(X, max_ref, rng)
    Y = _subsample(Y, max_batch, rng)
    Z = np.ascontiguousarray(np.concatenate([X, Y]), dtype=np.float32)
    m, n, N = len(X), len(Y), len(X) + len(Y)
    sigma = float(bandwidth) if bandwidth else median_bandwidth(Z, rng=rng)
    if not sigma > 0:
        raise CurateError(f"bandwidth must be > 0, got {bandwidth}")
    gamma = np.float32(1.0 / (2.0 * sigma * sigma))

    # A^T (B+1, N): row 0 = observed batch indicator, rows 1.. = random n-subsets
    At = np.zeros((B + 1, N), np.float32)
    At[0, m:] = 1.0
    for b in range(1, B + 1):
        At[b, rng.choice(N, n, replace=False)] = 1.0
    sq = np.einsum("ij,ij->i", Z, Z)
    aKa = np.zeros(B + 1)
    r = np.zeros(N)
    for s in range(0, N, row_block):
        # upper block row K[s:e, s:] only (K is symmetric): off-diagonal part counted twice
        e = min(N, s + row_block)
        G = Z[s:e] @ Z[s:].T
        G *= -2.0
        G += sq[None, s:]
        G += sq[s:e, None]
        np.maximum(G, 0.0, out=G)
        G *= -gamma
        np.exp(G, out=G)
        G[np.arange(e - s), np.arange(e - s)] = 1.0
        r[s:e] += G.sum(axis=1, dtype=np.float64)
        r[e:] += G[:, e - s :].sum(axis=0, dtype=np.float64)
        G[:, e - s :] *= 2.0
        P = G @ At[:, s:].T  # (rows, B+1) float32 GEMM
        aKa += np.einsum("ij,ji->j", P.astype(np.float64), At[:, s:e].astype(np.float64))
    total = r.sum()
    aR = At.astype(np.float64) @ r
    s_yy = aKa - n
    s_xy = aR - aKa
    s_xx = total - N - s_yy - 2.0 * s_xy
    mmd2 = s_xx / (m * (m - 1)) + s_yy / (n * (n - 1)) - 2.0 * s_xy / (m * n)
    obs = float(mmd2[0])
    p = (1.0 + np.sum(mmd2[1:] >= obs)) / (B + 1.0)
    kxx = s_xx[0] / (m * (m - 1))
    scale = np.sqrt(max(2.0 * (1.0 - kxx), 1e-12))
    mmd = float(np.sqrt(max(obs, 0.0)))
    return {"statistic": obs, "p_value": float(p), "n_permutations": B, "bandwidth": sigma,
            "mmd": mmd, "effect_size": float(mmd / scale), "n_ref": m, "n_batch": n}


def benjamini_hochberg(p_values, q: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """(rejected bool[k], BH-adjusted p-values float64[k]) at FDR level ``q``."""
    p = np.asarray(p_values, dtype=np.float64).reshape(-1)
    q = check_alpha(q, "q")
    if p.size == 0:
        return np.zeros(0, bool), np.zeros(0)
    if not np.all((p >= 0) & (p <= 1)):
        raise CurateError("p-values must be in [0, 1]")
    adj = false_discovery_control(p, method="bh")
    return adj <= q, adj


def check_batch(ref_X=None, batch_X=None, cal=None, batch_scores=None, *,
                alpha: float = 0.05, n_permutations: int = 1000,
                max_ref: int | None = 10_000, random_state: int | None = 0) -> dict[str, Any]:
    """Is a new batch shifted from the reference? A verdict with its evidence.

    Two tests, each run when its inputs are given:
    1. flagged fraction: ``cal`` is a fitted ``ConformalCalibrator`` (its alpha sets the
       flag threshold) or in-distribution calibration scores (a calibrator at
       ``alpha`` is fitted); ``batch_scores`` the batch's novelty scores (higher = more
       novel). Exact one-sided beta-binomial test of the flag count given the
       calibration set's size and the threshold's rank (:func:`calibrated_flag_test`).
    2. MMD permutation test of ``batch_X`` vs ``ref_X`` (embeddings).
    Verdict (Bonferroni over the tests run): "shifted" if min(p) <= alpha / #tests;
    ``combined_p`` = min(1, #tests * min(p)).
    """
    from curate.novelty.calibration import ConformalCalibrator

    alpha = check_alpha(alpha)
    out: dict[str, Any] = {"alpha": alpha}
    pvals = []
    if (cal is None) != (batch_scores is None):
        raise CurateError("give both cal and batch_scores for the flagged-fraction test")
    if cal is not None:
        if not isinstance(cal, ConformalCalibrator):
            cal = ConformalCalibrator(alpha=alpha).fit(cal)
        ft = calibrator_flag_test(cal, batch_scores)
        out.update({"flagged_fraction": ft["flagged_fraction"], "expected": ft["expected"],
                    "flag_alpha": float(cal.alpha), "n_flagged": ft["n_flagged"],
                    "n_batch": ft["n"], "n_cal": ft["n_cal"],
                    "threshold_rank": ft["threshold_rank"], "flag_test": ft["test"],
                    "flag_p": ft["p_value"], "effect": ft["effect"], "threshold": cal.threshold_,
                    "evidence": (f"{ft['effect']} ({ft['n_flagged']}/{ft['n']}); with this "
                                 f"calibration set (threshold = the {ft['threshold_rank']}-th smallest "
                                 f"of {ft['n_cal']} scores) an in-distribution batch of "
                                 f"{ft['n']} has that many flags or more with p = "
                                 f"{ft['p_value']:.3g}")})
        pvals.append(ft["p_value"])
    if (ref_X is None) != (batch_X is None):
        raise CurateError("give both ref_X and batch_X for the MMD test")
    if ref_X is not None:
        mmd = mmd_test(ref_X, batch_X, n_permutations=n_permutations, max_ref=max_ref,
                       random_state=random_state)
        out["mmd"] = mmd
        pvals.append(mmd["p_value"])
    if not pvals:
        raise CurateError("check_batch needs scores (cal + batch_scores) and/or embeddings")
    combined = min(1.0, len(pvals) * min(pvals))
    out["combined_p"] = combined
    out["verdict"] = "shifted" if combined <= alpha else "no shift"
    out["rule"] = f"Bonferroni over {len(pvals)} test(s): shifted if min(p) <= alpha/{len(pvals)}"
    return out
