"""Tests for cl_binvae.model.regularizer: KL_r, the mixture prior's sampler and its log-density."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Categorical, MixtureSameFamily, Normal, kl_divergence

from cl_binvae.model.regularizer import (
    binarized_kl,
    binarized_prior_log_prob,
    check_radius,
    sample_binarized_prior,
)

RADII = (0.0, 0.1, 0.5, 1.0, 2.0)


def _posterior(seed: int = 0, shape: tuple[int, int] = (256, 8)) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    return 2 * torch.randn(shape, generator=g), torch.randn(shape, generator=g)


@pytest.mark.parametrize("r", RADII)
def test_kl_is_kl_to_the_nearer_mode(r):
    mu, logvar = _posterior()
    expected = kl_divergence(Normal(mu, (0.5 * logvar).exp()), Normal(mu.sign() * r, 1.0))
    torch.testing.assert_close(binarized_kl(mu, logvar, r), expected)


def test_r0_is_the_standard_vae_kl():
    mu, logvar = _posterior(1)
    standard = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp())
    torch.testing.assert_close(binarized_kl(mu, logvar, 0.0), standard)


def test_kl_vanishes_only_on_a_mode():
    r = 1.5
    on_modes = binarized_kl(torch.tensor([r, -r]), torch.zeros(2), r)
    torch.testing.assert_close(on_modes, torch.zeros(2))
    # The collapsed state mu = 0 costs r^2 / 2 per dimension.
    torch.testing.assert_close(binarized_kl(torch.zeros(1), torch.zeros(1), r),
                               torch.tensor([r * r / 2]))


@pytest.mark.parametrize("r", RADII)
def test_gradients_finite_at_zero_mean(r):
    mu = torch.zeros(4, 3, requires_grad=True)
    logvar = torch.zeros(4, 3, requires_grad=True)
    binarized_kl(mu, logvar, r).sum().backward()
    assert torch.isfinite(mu.grad).all() and torch.isfinite(logvar.grad).all()
    # |mu| has gradient 0 at 0, so the KL alone leaves an exact zero where it is.
    assert (mu.grad == 0).all()


def test_gradient_pushes_small_means_towards_the_modes():
    mu = torch.tensor([1e-3, -1e-3, 3.0, -3.0], requires_grad=True)
    binarized_kl(mu, torch.zeros(4), 1.0).sum().backward()
    # A descent step moves each mean towards the mode of its own sign: +-1.
    torch.testing.assert_close(mu.grad, torch.tensor([-0.999, 0.999, 2.0, -2.0]))


@pytest.mark.parametrize("bad", [-1.0, -1e-9, math.nan, math.inf, -math.inf])
def test_bad_radius_raises(bad):
    mu, logvar = _posterior()
    with pytest.raises(ValueError, match="r="):
        check_radius(bad)
    with pytest.raises(ValueError, match="radius"):
        binarized_kl(mu, logvar, bad)
    with pytest.raises(ValueError, match="radius"):
        sample_binarized_prior(4, 2, bad)
    with pytest.raises(ValueError, match="radius"):
        binarized_prior_log_prob(mu, bad)


@pytest.mark.parametrize("r", [0.0, 1.0, 5.0])
def test_prior_samples_are_centred(r):
    z = sample_binarized_prior(20_000, 4, r, rng=torch.Generator().manual_seed(0))
    assert z.shape == (20_000, 4)
    # Standard error of the mean is sqrt(1 + r^2) / sqrt(n) <= 0.036.
    assert z.mean(0).abs().max() < 0.15
    torch.testing.assert_close(z.var(0), torch.full((4,), 1 + r * r), rtol=0.05, atol=0.0)


def test_prior_samples_split_into_two_modes_for_large_r():
    r = 5.0
    z = sample_binarized_prior(20_000, 3, r, rng=torch.Generator().manual_seed(1))
    positive = z > 0
    share = positive.float().mean(0)
    assert ((share - 0.5).abs() < 0.02).all()
    for d in range(3):
        upper, lower = z[positive[:, d], d], z[~positive[:, d], d]
        assert abs(upper.mean() - r) < 0.05 and abs(lower.mean() + r) < 0.05
        assert abs(upper.std() - 1) < 0.05 and abs(lower.std() - 1) < 0.05


def test_prior_at_r0_is_standard_normal():
    z = sample_binarized_prior(20_000, 2, 0.0, rng=torch.Generator().manual_seed(2))
    assert ((z.std(0) - 1).abs() < 0.02).all()
    # The density near 0 is N(0, 1)'s too: P(|z| < 0.1) = 2 Phi(0.1) - 1 = 0.0797.
    assert ((z.abs() < 0.1).float().mean() - 0.0797).abs() < 0.01


@pytest.mark.parametrize("r", [0.0, 0.3, 1.0, 2.0, 5.0])
def test_prior_log_prob_integrates_to_one(r):
    grid = torch.linspace(-20, 20, 40_001, dtype=torch.float64)
    density = binarized_prior_log_prob(grid[:, None], r).exp()
    assert abs(torch.trapezoid(density, grid).item() - 1) < 1e-6


def test_prior_log_prob_at_r0_is_normal():
    z = torch.randn(10, 5, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(binarized_prior_log_prob(z, 0.0), Normal(0, 1).log_prob(z).sum(-1))


@pytest.mark.parametrize("r", [0.5, 2.0])
def test_prior_log_prob_is_the_two_mode_mixture(r):
    mixture = MixtureSameFamily(Categorical(torch.tensor([0.5, 0.5])),
                                Normal(torch.tensor([r, -r]), torch.ones(2)))
    z = 3 * torch.randn(10, 5, generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(binarized_prior_log_prob(z, r), mixture.log_prob(z).sum(-1))
