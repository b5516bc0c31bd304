"""Split-conformal calibration of novelty scores (higher score = more novel).

Fit on n scores of held-out in-distribution items (not the reference the scorer was
fitted on). For a new score s:

    p(s) = (1 + #{cal >= s}) / (n + 1),   flag = p(s) <= alpha.

Under exchangeability of the calibration and the new in-distribution item,
P(flag) <= alpha (and > alpha - 1/(n+1)), i.e. the false-positive rate is controlled
at ``alpha`` (Vovk et al. 2005; Bates et al. 2023, "Testing for outliers with conformal
p-values"). Equivalently, with m = floor(alpha (n + 1)) - 1 and the calibration scores
sorted ascending c_(1) <= ... <= c_(n): flag <=> s > threshold_ = c_(n - m), so the
threshold rule and the p-value rule agree exactly (ties included). A target alpha <
1/(n + 1) can never flag anything and is refused.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.stats import binomtest

from curate.errors import CurateError
from curate.validation import check_alpha

_FUZZ = 1e-9


def _check_scores(scores, name: str) -> np.ndarray:
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 1:
        raise CurateError(f"{name} must be 1-D, got shape {s.shape}")
    if s.size == 0:
        raise CurateError(f"{name} is empty")
    if not np.isfinite(s).all():
        raise CurateError(f"{name} has {int((~np.isfinite(s)).sum())} NaN/inf value(s)")
    return s


class ConformalCalibrator:
    """Threshold at a target false-positive rate ``alpha`` with conformal p-values.

    Learned: ``cal_scores_`` (sorted, float64[n]), ``threshold_`` (flag <=> score >
    threshold_), ``n_``. ``get_state``/``from_state`` give plain arrays/scalars.
    """

    def __init__(self, alpha: float = 0.05):
        self.alpha = alpha

    def fit(self, cal_scores) -> "ConformalCalibrator":
        """Calibrate on in-distribution scores (higher = more novel); returns self."""
        s = _check_scores(cal_scores, "calibration scores")
        a = check_alpha(self.alpha)
        n = len(s)
        if a < 1.0 / (n + 1) - _FUZZ:
            raise CurateError(
                f"alpha={a:g} is below 1/(n+1)={1.0 / (n + 1):.4g} for {n} calibration "
                f"scores; use alpha >= {1.0 / (n + 1):.4g} or >= {int(np.ceil(1 / a)) - 1} scores"
            )
        self.cal_scores_ = np.sort(s)
        self.n_ = n
        m = int(np.floor(a * (n + 1) + _FUZZ)) - 1  # max #{cal >= s} that still flags
        self.threshold_ = float(self.cal_scores_[n - m - 1])
        return self

    def _check_fitted(self):
        if not hasattr(self, "cal_scores_"):
            raise CurateError("calibrator is not fitted; call fit(cal_scores) first")

    def p_values(self, scores) -> np.ndarray:
        """Conformal p-values float64[n] = (1 + #{cal >= s}) / (n + 1); small = novel."""
        self._check_fitted()
        s = _check_scores(scores, "scores")
        ge = self.n_ - np.searchsorted(self.cal_scores_, s, side="left")
        return (1.0 + ge) / (self.n_ + 1.0)

    def predict(self, scores) -> np.ndarray:
        """bool[n]: flagged as novel (score > threshold_ <=> p-value <= alpha)."""
        self._check_fitted()
        return _check_scores(scores, "scores") > self.threshold_

    def decide(self, scores) -> dict[str, np.ndarray]:
        """{score, p_value, flag} arrays for each score."""
        s = _check_scores(scores, "scores")
        return {"score": s, "p_value": self.p_values(s), "flag": self.predict(s)}

    def achieved_fpr(self, in_scores, confidence: float = 0.95) -> dict[str, Any]:
        """Fraction of fresh in-distribution scores flagged, with a Clopper-Pearson CI.

        Returns {fpr, n_flagged, n, ci_low, ci_high, confidence, target}.
        """
        flags = self.predict(in_scores)
        k, n = int(flags.sum()), len(flags)
        ci = binomtest(k, n).proportion_ci(confidence_level=confidence, method="exact")
        return {"fpr": k / n, "n_flagged": k, "n": n, "ci_low": float(ci.low),
                "ci_high": float(ci.high), "confidence": confidence, "target": float(self.alpha)}

    def get_state(self) -> dict[str, Any]:
        self._check_fitted()
        return {"alpha": float(self.alpha), "cal_scores_": self.cal_scores_,
                "threshold_": self.threshold_}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> "ConformalCalibrator":
        return cls(alpha=float(np.asarray(state["alpha"]))).fit(np.asarray(state["cal_scores_"]))
