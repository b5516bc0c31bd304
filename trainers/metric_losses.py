"""Metric-learning losses in pure torch: siamese contrastive, N-centroids (NCL), vMF.

Paper references: contrastive loss (004; Hadsell et al.), N-centroids loss and the vMF
confidence head (001). See ``../shared/docs/methods.md`` §1.4.

- :func:`contrastive_loss` -- ``1/2 y d^2 + 1/2 (1-y) max(0, m - d)^2`` with
  ``d = ||z0 - z1||_2`` and ``y = 1`` for a similar pair. Written here rather than taken
  from pytorch-metric-learning: its ``ContrastiveLoss`` computes
  ``relu(d - pos_margin)`` and ``relu(neg_margin - d)`` (a hinge that is *not* squared;
  with ``LpDistance(power=2)`` the negative term becomes ``relu(m - d^2)``, still not
  ``relu(m - d)^2``), averages positives and negatives separately over non-zero terms
  only (``AvgNonZeroReducer``) and mines pairs inside a batch, while the siamese regime
  feeds explicit pairs (``pairs.py``). None of its options gives this exact loss.
- :func:`pairwise_distance` -- euclidean, cosine (``1 - u.v``) or great-circle
  (``2 asin(clamp(||u - v|| / 2, 0, 1))``) between rows of two matrices.
- :func:`ncl_alpha`, :func:`update_centroids`, :func:`ncl_loss` -- the N-centroids loss
  on the unit sphere with EMA centroids ``c = normalise(alpha c' + (1 - alpha) c)``.
- :func:`log_bessel_iv`, :func:`vmf_log_normalizer`, :func:`vmf_nll` -- the von
  Mises-Fisher log-likelihood, differentiable in the concentration and stable up to
  thousands of dimensions (see :func:`log_bessel_iv` for the method).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

DISTANCES = ("euclidean", "cosine", "great-circle")


# --------------------------------------------------------------------------- contrastive
def contrastive_loss(z0: torch.Tensor, z1: torch.Tensor, y: torch.Tensor, margin: float = 1.0,
                     reduction: str = "mean") -> torch.Tensor:
    """Siamese contrastive loss of pairs ``(z0[i], z1[i])``; ``y[i] = 1`` similar, 0 not.

    ``z0, z1``: float (B, D); ``y``: (B,) in {0, 1}. Returns the mean (or the (B,) vector
    with ``reduction='none'``). Cost O(B D).
    """
    d = torch.linalg.vector_norm(z0 - z1, dim=1)
    y = y.to(d.dtype)
    per = 0.5 * y * d.pow(2) + 0.5 * (1 - y) * torch.clamp(margin - d, min=0).pow(2)
    return per if reduction == "none" else per.mean()


# --------------------------------------------------------------------------- distances
def great_circle(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Great-circle (angular) distance of unit vectors, row by row: (B, D), (B, D) -> (B,)."""
    chord = torch.linalg.vector_norm(u - v, dim=-1)
    return 2 * torch.asin(torch.clamp(chord / 2, 0.0, 1.0))


def pairwise_distance(x: torch.Tensor, c: torch.Tensor, metric: str = "euclidean") -> torch.Tensor:
    """Distances between the rows of ``x`` (B, D) and ``c`` (K, D) -> (B, K).

    ``euclidean``: ``||x - c||``; ``cosine``: ``1 - x.c`` (inputs assumed unit norm);
    ``great-circle``: ``2 asin(clamp(||x - c|| / 2, 0, 1 - 1e-7))`` (unit vectors; the
    clamp guards float error, and its upper end keeps the gradient finite at antipodal
    points at the price of <= 5e-4 rad there). Gradient-safe at zero distance.
    Cost O(B K D).
    """
    if metric == "cosine":
        return 1.0 - x @ c.T
    sq = (x.pow(2).sum(1, keepdim=True) + c.pow(2).sum(1)[None, :] - 2 * x @ c.T).clamp_min(0)
    chord = torch.sqrt(sq + 1e-12)  # eps keeps the gradient finite when x == c
    if metric == "euclidean":
        return chord
    if metric == "great-circle":
        return 2 * torch.asin(torch.clamp(chord / 2, 0.0, 1.0 - 1e-7))
    raise ValueError(f"unknown distance {metric!r}; choose one of {', '.join(DISTANCES)}")


# --------------------------------------------------------------------------- NCL
def ncl_alpha(step: int, alpha0: float = 0.25, decay: float = 0.65, period: float = 1000.0) -> float:
    """EMA weight of the batch centroid at iteration ``step``: ``alpha0 * decay^(step/period)``."""
    return float(alpha0 * decay ** (step / period))


@torch.no_grad()
def update_centroids(centroids: torch.Tensor, z: torch.Tensor, labels: torch.Tensor,
                     alpha: float) -> torch.Tensor:
    """One EMA step of the class centroids (001), returning new (K, D) unit rows.

    For every class k present in the batch: ``c' = normalise(mean z[labels == k])`` and
    ``c_k = normalise(alpha c' + (1 - alpha) c_k)`` (methods.md: the slide's
    ``(alpha - 1)`` is a sign slip). Absent classes keep their centroid. ``z`` is used
    detached. Cost O(B D + K D).
    """
    K, D = centroids.shape
    z = F.normalize(z.detach().to(centroids.dtype), dim=1)
    sums = torch.zeros(K, D, dtype=z.dtype, device=z.device).index_add_(0, labels, z)
    counts = torch.bincount(labels, minlength=K)
    present = counts > 0
    batch_c = F.normalize(sums, dim=1)
    new = centroids.clone()
    new[present] = F.normalize(alpha * batch_c[present] + (1 - alpha) * centroids[present], dim=1)
    return new


def ncl_loss(z: torch.Tensor, labels: torch.Tensor, centroids: torch.Tensor,
             metric: str = "great-circle", alpha: float = 1.0,
             reduction: str = "mean") -> torch.Tensor:
    """N-centroids loss (001) of unit embeddings ``z`` (B, D) against ``centroids`` (K, D).

    Per sample: ``d(z, own) - [alpha > 0] (d(z, nearest other) + mean_i d(z, other_i))``:
    the positive term pulls toward the own centroid, the hard term pushes from the
    closest other centroid and the easy term from all others. Centroids enter detached
    (they move by :func:`update_centroids` only). Needs K >= 2. The value can be
    negative (it is bounded: distances on the sphere are <= 2 or pi). Cost O(B K D).
    """
    dist = pairwise_distance(z, centroids.detach().to(z.dtype), metric)  # (B, K)
    pos = dist.gather(1, labels[:, None]).squeeze(1)
    if alpha > 0:
        own = F.one_hot(labels, centroids.shape[0]).bool()
        hard = dist.masked_fill(own, float("inf")).min(1).values
        easy = dist.masked_fill(own, 0.0).sum(1) / (centroids.shape[0] - 1)
        per = pos - (hard + easy)
    else:
        per = pos
    return per if reduction == "none" else per.mean()


# --------------------------------------------------------------------------- vMF
_DEBYE_MIN_ORDER = 16.0


def _debye_log_iv(v: float, k: torch.Tensor) -> torch.Tensor:
    """Uniform asymptotic (Debye) expansion of ``log I_v(k)``, terms u1..u4 (DLMF 10.41.3).

    ``I_v(v z) ~ exp(v eta) / (sqrt(2 pi v) (1 + z^2)^(1/4)) sum_j u_j(t) / v^j`` with
    ``t = 1 / sqrt(1 + z^2)`` and ``eta = sqrt(1 + z^2) + log(z / (1 + sqrt(1 + z^2)))``.
    Uniform in ``z``; relative error ~ u5 / v^5 (~1e-9 for v >= 16).
    """
    z = k / v
    s = torch.sqrt(1 + z * z)
    t = 1 / s
    eta = s + torch.log(z) - torch.log1p(s)
    t2 = t * t
    u1 = t * (3 - 5 * t2) / 24
    u2 = t2 * (81 - 462 * t2 + 385 * t2 ** 2) / 1152
    u3 = t * t2 * (30375 - 369603 * t2 + 765765 * t2 ** 2 - 425425 * t2 ** 3) / 414720
    u4 = t2 ** 2 * (4465125 - 94121676 * t2 + 349922430 * t2 ** 2 - 446185740 * t2 ** 3
                    + 185910725 * t2 ** 4) / 39813120
    series = 1 + u1 / v + u2 / v ** 2 + u3 / v ** 3 + u4 / v ** 4
    return v * eta - 0.5 * math.log(2 * math.pi * v) + 0.5 * torch.log(t) + torch.log(series)


def log_bessel_iv(v: float, k: torch.Tensor) -> torch.Tensor:
    """``log I_v(k)``, the log modified Bessel function of the first kind; differentiable in k.

    ``v >= 0`` a Python float (order), ``k > 0`` a tensor (any shape). Computed in float64
    and cast back. Method: for ``v >= 16`` the uniform asymptotic (Debye) expansion
    (:func:`_debye_log_iv`); for smaller orders the expansion at order ``v + n`` (n with
    ``v + n >= 16``) followed by the stable backward recurrence of the ratio
    ``r_v = I_{v+1} / I_v = 1 / (2 (v + 1) / k + r_{v+1})`` (I_v is the minimal solution
    of the recurrence, so going down in order does not amplify error), with
    ``log I_v = log I_{v+1} - log r_v``. No over/underflow: everything stays in logs,
    so it is finite for ``v = 511`` (d = 1024) at ``k`` from 1e-3 to 1e6, where
    ``scipy.special.ive`` underflows to 0. Agrees with ``log(ive(v, k)) + k`` to ~1e-8
    relative where the latter is finite (tests). Cost: ~30 elementwise ops.
    """
    dtype = k.dtype
    k = k.to(torch.float64)
    if v >= _DEBYE_MIN_ORDER:
        return _debye_log_iv(float(v), k).to(dtype)
    n = int(math.ceil(_DEBYE_MIN_ORDER - v))
    top = float(v + n)
    log_top = _debye_log_iv(top, k)
    r = torch.exp(_debye_log_iv(top + 1, k) - log_top)  # I_{top+1} / I_top
    out = log_top
    for j in range(n - 1, -1, -1):  # orders v + n - 1 ... v
        r = 1.0 / (2.0 * (v + j + 1) / k + r)  # r_{v+j}
        out = out - torch.log(r)
    return out.to(dtype)


def vmf_log_normalizer(kappa: torch.Tensor, dim: int) -> torch.Tensor:
    """``log C_d(kappa) = (d/2 - 1) log kappa - (d/2) log(2 pi) - log I_{d/2-1}(kappa)``.

    The vMF density on the unit sphere S^{d-1} is ``C_d(kappa) exp(kappa mu.x)``.
    ``kappa`` > 0 (any shape), ``dim`` = d >= 2. Differentiable in kappa.
    """
    v = dim / 2.0 - 1.0
    return v * torch.log(kappa) - (dim / 2.0) * math.log(2 * math.pi) - log_bessel_iv(v, kappa)


def vmf_log_prob(z: torch.Tensor, mu: torch.Tensor, kappa: torch.Tensor) -> torch.Tensor:
    """Log densities of unit rows ``z`` (B, D) under vMFs (``mu`` (K, D) unit, ``kappa`` (K,)) -> (B, K)."""
    return vmf_log_normalizer(kappa, z.shape[1])[None, :] + kappa[None, :] * (z @ mu.T)


def vmf_nll(z: torch.Tensor, labels: torch.Tensor, mu: torch.Tensor, kappa: torch.Tensor,
            reduction: str = "mean") -> torch.Tensor:
    """Negative log-likelihood of unit ``z`` (B, D) under its own class vMF (mu[y], kappa[y]).

    Minimising it over ``kappa`` gives the maximum-likelihood concentration per class
    (mean resultant length ``A_d(kappa) = I_{d/2}/I_{d/2-1} = mean mu.z``).
    """
    k = kappa[labels]
    per = -(vmf_log_normalizer(k, z.shape[1]) + k * (z * mu[labels]).sum(1))
    return per if reduction == "none" else per.mean()
