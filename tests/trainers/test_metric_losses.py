"""Loss values of the metric-learning trainers against hand-computed cases."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.special import ive

from curate.novelty.vmf import vmf_log_normalizer
from curate.trainers.metric_losses import (contrastive_loss, great_circle, ncl_alpha, ncl_loss,
                                           pairwise_distance, update_centroids, vmf_log_prob,
                                           vmf_nll)


def _pair(d):
    return torch.zeros(1, 2), torch.tensor([[d, 0.0]])


@pytest.mark.parametrize("d", [0.0, 0.5, 1.0, 1.5])
def test_contrastive_similar_pair_is_half_squared_distance(d):
    z0, z1 = _pair(d)
    assert contrastive_loss(z0, z1, torch.tensor([1])).item() == pytest.approx(0.5 * d * d)


@pytest.mark.parametrize("d,expected", [(0.0, 0.5), (0.5, 0.125), (0.9, 0.005), (1.0, 0.0),
                                        (1.5, 0.0)])
def test_contrastive_dissimilar_pair_is_squared_hinge_around_margin(d, expected):
    z0, z1 = _pair(d)
    assert contrastive_loss(z0, z1, torch.tensor([0]), margin=1.0).item() == pytest.approx(expected)


def test_contrastive_margin_and_reduction():
    z0 = torch.zeros(2, 3)
    z1 = torch.tensor([[1.0, 0, 0], [0, 1.0, 0]])
    per = contrastive_loss(z0, z1, torch.tensor([1, 0]), margin=2.0, reduction="none")
    assert per.tolist() == pytest.approx([0.5, 0.5])


def test_great_circle_on_known_vectors():
    e1, e2 = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])
    assert great_circle(e1, e2).item() == pytest.approx(math.pi / 2)
    assert great_circle(e1, -e1).item() == pytest.approx(math.pi)
    assert great_circle(e1, e1).item() == pytest.approx(0.0)
    u = torch.tensor([[math.cos(0.3), math.sin(0.3)]])
    assert great_circle(e1, u).item() == pytest.approx(0.3, abs=1e-6)
    d = pairwise_distance(e1, torch.cat([e1, e2, -e1, u]), "great-circle")
    assert d[0].tolist() == pytest.approx([0, math.pi / 2, math.pi, 0.3], abs=1e-3)


def test_pairwise_distances_euclidean_cosine():
    x = torch.tensor([[1.0, 0.0]])
    c = torch.tensor([[0.0, 1.0], [-1.0, 0.0]])
    assert pairwise_distance(x, c, "euclidean")[0].tolist() == pytest.approx([math.sqrt(2), 2.0])
    assert pairwise_distance(x, c, "cosine")[0].tolist() == pytest.approx([1.0, 2.0])


def test_ncl_alpha_schedule():
    assert ncl_alpha(0) == pytest.approx(0.25)
    assert ncl_alpha(1000) == pytest.approx(0.25 * 0.65)
    assert ncl_alpha(3000) == pytest.approx(0.25 * 0.65 ** 3)


def test_centroid_update_uses_one_minus_alpha():
    c = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    z = torch.tensor([[0.0, 2.0], [0.0, 4.0], [1.0, 0.0]])  # class 0 batch mean -> (0, 1)
    y = torch.tensor([0, 0, 1])
    new = update_centroids(c, z, y, alpha=0.25)
    expected0 = F.normalize(torch.tensor([0.75, 0.25]), dim=0)  # 0.25 c' + 0.75 c
    assert new[0].tolist() == pytest.approx(expected0.tolist())
    expected1 = F.normalize(torch.tensor([0.25, 0.75]), dim=0)
    assert new[1].tolist() == pytest.approx(expected1.tolist())
    assert new[2].tolist() == pytest.approx([-1.0, 0.0])  # absent class unchanged
    assert torch.linalg.vector_norm(new, dim=1).tolist() == pytest.approx([1, 1, 1])


def test_ncl_loss_hand_computed():
    c = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    z = torch.tensor([[1.0, 0.0]])
    y = torch.tensor([0])
    # great circle: own 0, others pi/2 and pi -> 0 - (pi/2 + (pi/2 + pi)/2)
    # (the training distance clamps asin's argument at 1 - 1e-7: ~5e-4 rad off at the antipode)
    got = ncl_loss(z, y, c, "great-circle", alpha=0.1).item()
    assert got == pytest.approx(-(math.pi / 2 + 3 * math.pi / 4), abs=1e-3)
    # cosine: own 0, others 1 and 2 -> 0 - (1 + 1.5)
    assert ncl_loss(z, y, c, "cosine", alpha=0.1).item() == pytest.approx(-2.5)
    # alpha == 0: the negative terms are switched off
    assert ncl_loss(z, y, c, "cosine", alpha=0.0).item() == pytest.approx(0.0)


@pytest.mark.parametrize("d", [2, 3, 4, 8, 16, 33, 64, 128])
def test_torch_normaliser_is_the_numpy_one_and_its_gradient_is_minus_a_d(d):
    """The trainer's vMF uses curate.novelty.vmf's normaliser: same values on tensors,
    gradient -A_d(kappa) = -I_{d/2}/I_{d/2-1} (scipy), float32 in -> float32 out."""
    k = np.array([0.01, 0.5, 1.0, 3.0, 10.0, 40.0, 100.0, 700.0, 5000.0])
    t = torch.tensor(k, requires_grad=True)
    out = vmf_log_normalizer(d, t)
    out.sum().backward()
    assert out.dtype == torch.float64
    np.testing.assert_array_equal(out.detach().numpy(), vmf_log_normalizer(d, k))
    ok = ive(d / 2 - 1, k) > 1e-290
    np.testing.assert_allclose(-t.grad.numpy()[ok], (ive(d / 2, k) / ive(d / 2 - 1, k))[ok], rtol=1e-10)
    f32 = vmf_log_normalizer(d, torch.tensor(k, dtype=torch.float32))
    assert f32.dtype == torch.float32 and torch.allclose(f32.double(), out.detach(), rtol=1e-6)


def test_vmf_log_prob_and_nll_agree():
    torch.manual_seed(1)
    mu = F.normalize(torch.randn(3, 5), dim=1)
    z = F.normalize(torch.randn(7, 5), dim=1)
    kappa = torch.tensor([1.0, 10.0, 100.0])
    y = torch.tensor([0, 1, 2, 0, 1, 2, 0])
    lp = vmf_log_prob(z, mu, kappa)
    assert torch.allclose(-lp[torch.arange(7), y], vmf_nll(z, y, mu, kappa, reduction="none"))


def test_vmf_normaliser_stable_at_1024_dims():
    k = torch.logspace(-2, 6, 30, dtype=torch.float32).requires_grad_(True)
    out = vmf_log_normalizer(1024, k)
    out.sum().backward()
    assert torch.isfinite(out).all() and torch.isfinite(k.grad).all()
    assert (out[1:] <= out[:-1] + 1e-3).all()  # log C_d decreases with kappa
    # d log C / d kappa = -A_d(kappa) in (-1, 0)
    assert (k.grad <= 1e-6).all() and (k.grad >= -1 - 1e-5).all()


def test_vmf_d3_closed_form():
    k = torch.tensor([0.5, 2.0, 30.0], dtype=torch.float64)
    ref = torch.log(k / (4 * math.pi * torch.sinh(k)))
    assert vmf_log_normalizer(3, k).tolist() == pytest.approx(ref.tolist(), rel=1e-12)


def test_vmf_nll_minimised_at_ml_kappa():
    torch.manual_seed(0)
    mu = F.normalize(torch.randn(1, 16), dim=1)
    z = F.normalize(mu + 0.3 * torch.randn(500, 16), dim=1)
    y = torch.zeros(500, dtype=torch.long)
    log_k = torch.zeros(1, requires_grad=True)
    opt = torch.optim.Adam([log_k], lr=0.1)
    for _ in range(300):
        opt.zero_grad()
        vmf_nll(z, y, mu, log_k.exp()).backward()
        opt.step()
    kappa = log_k.exp().item()
    # at the optimum A_d(kappa) = I_{d/2}(k) / I_{d/2-1}(k) equals the mean cosine
    a = ive(8, kappa) / ive(7, kappa)
    assert a == pytest.approx((z @ mu.T).mean().item(), rel=1e-3)
