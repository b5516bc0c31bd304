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
- :func:`vmf_log_prob`, :func:`vmf_nll` -- the von Mises-Fisher log-likelihood,
  differentiable in the concentration and stable up to thousands of dimensions; the
  normaliser is :func:`curate.novelty.vmf.vmf_log_normalizer` ``(d, kappa)`` (the one
  Bessel code of curate: scipy's ``ive`` plus a Debye expansion where it underflows).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from curate.novelty.vmf import vmf_log_normalizer

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
def vmf_log_prob(z: torch.Tensor, mu: torch.Tensor, kappa: torch.Tensor) -> torch.Tensor:
    """Log densities of unit rows ``z`` (B, D) under vMFs (``mu`` (K, D) unit, ``kappa`` (K,)) -> (B, K)."""
    return vmf_log_normalizer(z.shape[1], kappa)[None, :] + kappa[None, :] * (z @ mu.T)


def vmf_nll(z: torch.Tensor, labels: torch.Tensor, mu: torch.Tensor, kappa: torch.Tensor,
            reduction: str = "mean") -> torch.Tensor:
    """Negative log-likelihood of unit ``z`` (B, D) under its own class vMF (mu[y], kappa[y]).

    Minimising it over ``kappa`` gives the maximum-likelihood concentration per class
    (mean resultant length ``A_d(kappa) = I_{d/2}/I_{d/2-1} = mean mu.z``). The
    normaliser is evaluated once per class (K values), then gathered.
    """
    k = kappa[labels]
    per = -(vmf_log_normalizer(z.shape[1], kappa)[labels] + k * (z * mu[labels]).sum(1))
    return per if reduction == "none" else per.mean()
