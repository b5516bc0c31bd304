"""Per-class von Mises-Fisher novelty score (thesis 001): higher = more novel.

On the unit sphere S^{d-1} the vMF density is ``C_d(kappa) exp(kappa mu^T x)`` with
``log C_d(kappa) = (d/2 - 1) log kappa - (d/2) log(2 pi) - log I_{d/2-1}(kappa)``.
Per class: mean direction mu = R/||R|| (R = sum of unit rows), rbar = ||R||/n and the
Banerjee et al. (JMLR 2005) approximation ``kappa = rbar (d - rbar^2) / (1 - rbar^2)``.
Score = minus the best class log-likelihood, ``-max_c [log C_d(kappa_c) + kappa_c
mu_c^T x]``. Means/kappas from a trained model (e.g. NCL's vMF head) can be given with
``VMFScorer.from_params``. Cost: score O(n K d).

The one vMF normaliser of curate: :func:`vmf_log_normalizer` ``(d, kappa)`` takes a
numpy array or a torch tensor; the NCL trainer's vMF loss
(:mod:`curate.trainers.metric_losses`) uses it too, differentiably (the derivative
``d log C_d / d kappa = -A_d(kappa)``, :func:`vmf_mean_resultant`). ``log I_v(x)`` is
``log(ive(v, x)) + x`` (scipy's exponentially scaled Bessel function, ~1e-15
relative); where ive underflows (large order v, e.g. d = 1024 with moderate kappa)
the uniform asymptotic (Debye) expansion of Olver (DLMF 10.41.3) with terms up to u_4
is used (relative error ~u_5 / v^5; < 1e-12 where it is used). Tests compare with
mpmath at 50 digits and with the normalising integral over the sphere.
"""

from __future__ import annotations

import functools

import numpy as np
from scipy.special import ive

from curate.errors import CurateError
from curate.novelty._base import EPS, NoveltyScorer, check_labels
from curate.novelty._classes import ClassAccumulatorMixin
from curate.validation import check_matrix

RBAR_MAX = 1.0 - 1e-9
KAPPA_MIN = 1e-10
_TINY = 1e-290


def _log_iv_uniform(v: np.ndarray, x: np.ndarray) -> np.ndarray:
    """log I_v(x) by the uniform asymptotic expansion (v > 0), terms u1..u4; accurate
    for large v, uniformly in x."""
    z = x / v
    s = np.sqrt(1.0 + z * z)
    t = 1.0 / s
    t2 = t * t
    eta = s + np.log(z) - np.log1p(s)
    u1 = t * (3.0 - 5.0 * t2) / 24.0
    u2 = t2 * (81.0 - 462.0 * t2 + 385.0 * t2 * t2) / 1152.0
    u3 = t * t2 * (30375.0 - 369603.0 * t2 + 765765.0 * t2**2 - 425425.0 * t2**3) / 414720.0
    u4 = t2**2 * (4465125.0 - 94121676.0 * t2 + 349922430.0 * t2**2 - 446185740.0 * t2**3
                  + 185910725.0 * t2**4) / 39813120.0
    series = 1.0 + u1 / v + u2 / v**2 + u3 / v**3 + u4 / v**4
    return v * eta - 0.5 * np.log(2.0 * np.pi * v) - 0.5 * np.log(s) + np.log(series)


def _log_ive(v, x) -> np.ndarray:
    """log(I_v(x) e^{-x}) for x > 0 (float64 array): scipy's ive, the expansion where it underflows."""
    v, x = np.broadcast_arrays(np.asarray(v, np.float64), np.asarray(x, np.float64))
    r = ive(v, x)
    ok = r > _TINY
    out = np.empty(v.shape)
    out[ok] = np.log(r[ok])
    bad = ~ok
    if bad.any():
        if np.any(v[bad] <= 0):
            raise CurateError("log_bessel_iv: underflow at order <= 0")
        out[bad] = _log_iv_uniform(v[bad], x[bad]) - x[bad]
    return out


def log_bessel_iv(v, x) -> np.ndarray:
    """log I_v(x) for x > 0, stable for large v and x (float64 array)."""
    return _log_ive(v, x) + np.asarray(x, np.float64)


def vmf_mean_resultant(d: int, kappa) -> np.ndarray:
    """``A_d(kappa) = I_{d/2}(kappa) / I_{d/2-1}(kappa)`` in (0, 1): the expected cosine
    to the mean direction, and ``-d log C_d / d kappa``. Float64 array like ``kappa``."""
    kappa = np.maximum(np.asarray(kappa, np.float64), KAPPA_MIN)
    return np.exp(_log_ive(d / 2.0, kappa) - _log_ive(d / 2.0 - 1.0, kappa))


def _log_normalizer(d: int, kappa) -> np.ndarray:
    kappa = np.maximum(np.asarray(kappa, np.float64), KAPPA_MIN)
    v = d / 2.0 - 1.0
    return v * np.log(kappa) - (d / 2.0) * np.log(2.0 * np.pi) - log_bessel_iv(v, kappa)


def vmf_log_normalizer(d: int, kappa):
    """log C_d(kappa) of the vMF density on S^{d-1} (d >= 2), kappa > 0 (clamped at
    ``KAPPA_MIN``). ``kappa``: numpy-like (float64 array out) or a torch tensor (a tensor
    of its dtype and device out, differentiable in kappa; computed in float64 on the CPU:
    one transfer each way)."""
    if type(kappa).__module__.startswith("torch"):
        return _torch_log_normalizer().apply(kappa, int(d))
    return _log_normalizer(d, kappa)


@functools.cache
def _torch_log_normalizer():
    import torch

    class LogNormalizer(torch.autograd.Function):
        """log C_d(kappa) with ``d/dkappa = -A_d(kappa)`` (no cancellation at small kappa)."""

        @staticmethod
        def forward(ctx, kappa, d):
            k = kappa.detach().to("cpu", torch.float64).numpy()
            out = torch.from_numpy(_log_normalizer(d, k)).to(kappa.device, kappa.dtype)
            ctx.save_for_backward(torch.from_numpy(-vmf_mean_resultant(d, k)).to(kappa.device))
            return out

        @staticmethod
        def backward(ctx, grad):
            (slope,) = ctx.saved_tensors
            return grad * slope.to(grad.dtype), None

    return LogNormalizer


def banerjee_kappa(rbar, d: int) -> np.ndarray:
    """kappa ~ rbar (d - rbar^2) / (1 - rbar^2) (Banerjee et al. 2005); rbar in [0, 1)."""
    rbar = np.clip(np.asarray(rbar, np.float64), 0.0, RBAR_MAX)
    return rbar * (d - rbar**2) / (1.0 - rbar**2)


class VMFScorer(ClassAccumulatorMixin, NoveltyScorer):
    """Minus the best per-class vMF log-likelihood; higher = more novel.

    Needs >= 2 rows per class (one row gives rbar = 1, kappa = inf); without y one vMF.
    Learned: ``classes_``, ``means_`` (K, d) unit, ``kappas_`` (K,), ``log_norm_`` (K,),
    running ``count_``/``resultant_``. ``explain`` reports the best class and its
    log-likelihood as ``class_score``.
    """

    name = "vmf"
    min_class_size = 2
    _state_attrs = ("classes_", "count_", "resultant_", "means_", "kappas_", "log_norm_")

    def __init__(self, sample_size: int = 10_000, random_state: int | None = 0):
        self.sample_size = sample_size
        self.random_state = random_state

    def _class_shapes(self, d):
        return {"count_": ((), np.int64), "resultant_": ((d,), np.float64)}

    def _reset_acc(self):
        self.classes_ = None

    def _accumulate(self, Xp, y):
        self._add_class_sums(Xp, y, "resultant_")

    def _finalize_model(self):
        if self.n_features_in_ < 2:
            raise CurateError("vmf needs d >= 2 features")
        self._check_class_sizes(self.count_)
        norms = np.linalg.norm(self.resultant_, axis=1)
        self.means_ = self.resultant_ / np.maximum(norms, EPS)[:, None]
        self.kappas_ = banerjee_kappa(norms / self.count_, self.n_features_in_)
        self.log_norm_ = vmf_log_normalizer(self.n_features_in_, self.kappas_)

    def class_log_likelihood(self, X) -> np.ndarray:
        """Per-class vMF log-density (n, K) of the normalised rows of X."""
        self._ensure_ready()
        X = check_matrix(X, "X", self.n_features_in_)
        return self._loglik(self._prepare(X))

    def _loglik(self, Xp):
        return self.log_norm_[None, :] + (Xp @ self.means_.T) * self.kappas_[None, :]

    def _score(self, Xp):
        return -self._loglik(Xp).max(axis=1)

    def _nearest_class(self, Xp):
        ll = self._loglik(Xp)
        gi = ll.argmax(axis=1)
        return self._labels_out(gi), ll[np.arange(len(gi)), gi]

    @classmethod
    def from_params(cls, means, kappas, labels=None, **params) -> "VMFScorer":
        """A fitted scorer from given mean directions (K, d) and concentrations (K,).

        ``labels`` (K,) name the classes (default 0..K-1). No reference sample exists,
        so ``reference_scores_`` is empty and percentiles are NaN.
        """
        means = check_matrix(means, "means")
        kappas = np.asarray(kappas, np.float64).reshape(-1)
        if len(kappas) != len(means):
            raise CurateError(f"got {len(means)} means but {len(kappas)} kappas")
        if not np.all(np.isfinite(kappas)) or np.any(kappas <= 0):
            raise CurateError("kappas must be finite and > 0")
        if means.shape[1] < 2:
            raise CurateError("vmf needs d >= 2 features")
        obj = cls(**params)
        obj._reset()
        obj._initialized = True
        obj.n_features_in_ = means.shape[1]
        obj.has_labels_ = labels is not None
        obj.classes_ = (check_labels(labels, len(means), "labels") if labels is not None
                        else np.arange(len(means)))
        order = np.argsort(obj.classes_, kind="stable")
        obj.classes_ = obj.classes_[order]
        if len(np.unique(obj.classes_)) != len(obj.classes_):
            raise CurateError("labels must be unique")
        m = np.asarray(means, np.float64)[order]
        obj.means_ = m / np.maximum(np.linalg.norm(m, axis=1), EPS)[:, None]
        obj.kappas_ = kappas[order]
        obj.log_norm_ = vmf_log_normalizer(obj.n_features_in_, obj.kappas_)
        obj.count_ = np.zeros(len(m), np.int64)
        obj.resultant_ = np.zeros_like(m)
        obj.reference_scores_ = np.empty(0)
        obj._dirty = False
        return obj
