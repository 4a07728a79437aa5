"""Tests for cl_binvae.model.diagnostics against hand-made posteriors with known answers."""

from __future__ import annotations

import math

import pytest
import torch

from cl_binvae.model import diagnostics
from cl_binvae.model.config import PriorConfig
from cl_binvae.model.diagnostics import (
    active_units,
    collapsed_dimensions,
    diagnose,
    iw_log_likelihood,
    kl_per_dimension,
    posterior_moments,
    reconstruction_error,
    sign_balance,
)
from cl_binvae.model.likelihood import log_likelihood
from cl_binvae.model.regularizer import binarized_kl
from cl_binvae.model.vae import MLPVAE, BaseVAE, VAEConfig
from cl_binvae.suite.data import ArrayDataset
from cl_binvae.suite.streams import images_to_tensor

pytestmark = pytest.mark.usefixtures("one_thread")

SHAPE = (1, 28, 28)


@pytest.fixture(scope="module")
def x(mnist: ArrayDataset) -> torch.Tensor:
    return images_to_tensor(mnist.x_test[:300])


def _vae(r: float, z_dim: int = 4, seed: int = 0) -> MLPVAE:
    torch.manual_seed(seed)
    return MLPVAE(SHAPE, VAEConfig(r=r, z_dim=z_dim, hidden=(32,),
                                   prior=PriorConfig("mixture")))


def _set_posterior(vae: BaseVAE, dim: int, *, mu: float = 0.0, logvar: float = 0.0,
                   mu_scale: float = 0.0) -> None:
    """Make posterior dimension ``dim`` N(mu, e^logvar) for every input: a constant mean, or
    with ``mu_scale`` a random linear function of the encoder features, which vary by image."""
    with torch.no_grad():
        vae.fc_mu.weight[dim] = mu_scale * torch.randn_like(vae.fc_mu.weight[dim])
        vae.fc_mu.bias[dim] = mu
        vae.fc_logvar.weight[dim] = 0.0
        vae.fc_logvar.bias[dim] = logvar


def _handmade(r: float) -> MLPVAE:
    """Dimension 0 sits on the prior mode +r, 1 encodes the image, 2 and 3 are constants off
    the modes: mu = +(r + 1) and -(r + 1), KL_r = 0.5 each."""
    vae = _vae(r)
    _set_posterior(vae, 0, mu=r)
    _set_posterior(vae, 1, mu_scale=5.0, logvar=-4.0)
    _set_posterior(vae, 2, mu=r + 1)
    _set_posterior(vae, 3, mu=-(r + 1))
    return vae


def _ignore_latents(vae: MLPVAE) -> None:
    """Make the decoder's output independent of z, so log p(x|z) is one number per image."""
    with torch.no_grad():
        vae.decoder[-1].weight.zero_()


@pytest.mark.parametrize("r", [0.0, 1.0])
def test_handmade_activity_collapse_and_signs(x, r):
    vae = _handmade(r)
    assert active_units(vae, x) == 1
    assert collapsed_dimensions(vae, x) == 1
    balance = sign_balance(vae, x)
    assert balance[0] == (1.0 if r > 0 else 0.0)  # mu = 0 is not positive
    assert 0.0 < balance[1] < 1.0
    assert balance[2] == 1.0 and balance[3] == 0.0


@pytest.mark.parametrize("r", [0.0, 1.0])
def test_handmade_kl_per_dimension(x, r):
    vae = _handmade(r)
    kl = kl_per_dimension(vae, x)
    assert kl.shape == (4,)
    mu1 = posterior_moments(vae, x)[0][:, 1]
    # Dimension 1 by hand: 0.5 [(|mu| - r)^2 + e^-4 + 4 - 1], averaged over the images.
    kl1 = (0.5 * ((mu1.abs() - r).pow(2) + math.exp(-4) + 3)).mean()
    torch.testing.assert_close(kl, torch.tensor([0.0, kl1.item(), 0.5, 0.5]))


def test_thresholds_are_respected(x):
    vae = _handmade(0.0)
    assert active_units(vae, x, threshold=1e9) == 0
    # Dimensions 2 and 3 cost exactly 0.5 nats: collapsed under a 0.6 threshold, not under 0.4.
    assert collapsed_dimensions(vae, x, threshold=0.6) == 3
    assert collapsed_dimensions(vae, x, threshold=0.4) == 1


def test_reconstruction_error_decodes_the_mean(x):
    vae = _vae(0.5)
    vae.eval()
    with torch.no_grad():
        expected = vae.reconstruction_nll(x, vae.decode(vae.encode(x)[0]))
    got = reconstruction_error(vae, x, batch_size=7)
    assert got.shape == (len(x),)
    torch.testing.assert_close(got, expected)


def test_results_do_not_depend_on_the_batch_size(x):
    vae = _vae(1.0)
    torch.testing.assert_close(reconstruction_error(vae, x, batch_size=13),
                               reconstruction_error(vae, x, batch_size=1000))
    torch.testing.assert_close(kl_per_dimension(vae, x, batch_size=13),
                               kl_per_dimension(vae, x, batch_size=1000))


def test_training_mode_and_schedule_are_restored(x):
    vae = MLPVAE(SHAPE, VAEConfig(variant="capacity", beta=4.0, z_dim=4, hidden=(32,),
                                  prior=PriorConfig("mixture")))
    vae.train()
    diagnose(vae, x, k=2)
    assert vae.training and int(vae.train_steps) == 0
    vae.eval()
    reconstruction_error(vae, x)
    assert not vae.training


def test_iw_bound_is_exact_when_the_posterior_is_the_prior(x):
    # With r = 0 and q = N(0, I) = p(z), every weight p(z)/q(z) is exactly 1, and with a decoder
    # that ignores z the bound equals log p(x) = -recon for any k.
    vae = _vae(0.0)
    for dim in range(4):
        _set_posterior(vae, dim)
    _ignore_latents(vae)
    recon = reconstruction_error(vae, x)
    for k in (1, 7):
        torch.testing.assert_close(iw_log_likelihood(vae, x, k=k), -recon)


def test_iw_bound_scores_the_mixture_prior_not_the_nearer_mode(x):
    # q = N(r, 1) on every dimension. Against the nearer mode N(r, 1) the one-sample bound would
    # equal -recon; against the mixture it is lower by z_dim * KL(N(r, 1) || mixture).
    r, z_dim = 2.0, 4
    vae = _vae(r, z_dim=z_dim)
    for dim in range(z_dim):
        _set_posterior(vae, dim, mu=r)
    _ignore_latents(vae)
    recon = reconstruction_error(vae, x)
    grid = torch.linspace(r - 10, r + 10, 20_001, dtype=torch.float64)
    log_q = -0.5 * (grid - r).pow(2) - 0.5 * math.log(2 * math.pi)
    log_mix = (torch.logaddexp(-0.5 * (grid - r).pow(2), -0.5 * (grid + r).pow(2))
               - 0.5 * math.log(2 * math.pi) - math.log(2))
    kl_to_mixture = torch.trapezoid(log_q.exp() * (log_q - log_mix), grid).item()
    assert 0.6 < kl_to_mixture < math.log(2)  # nearly one bit: the other mode is far away

    gap = (iw_log_likelihood(vae, x, k=1, rng=torch.Generator().manual_seed(0))
           + recon).mean().item()
    assert gap == pytest.approx(-z_dim * kl_to_mixture, abs=0.1)
    gap_k = (iw_log_likelihood(vae, x, k=100, rng=torch.Generator().manual_seed(0))
             + recon).mean().item()
    assert gap < gap_k <= 1e-4  # more samples tighten the bound, which stays below log p(x)


@pytest.fixture
def trained(x: torch.Tensor) -> MLPVAE:
    """A tiny VAE after 60 Adam steps, so its posterior and decoder are not trivial."""
    vae = _vae(0.0, z_dim=8, seed=1)
    optimizer = torch.optim.Adam(vae.parameters(), lr=3e-3)
    for step in range(60):
        start = (step * 50) % len(x)
        loss = vae.loss(x[start:start + 50])["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return vae


def test_one_sample_bound_is_the_elbo_in_expectation(x, trained):
    vae, repeats = trained, 20
    vae.eval()
    gen = torch.Generator().manual_seed(2)
    iw1 = torch.stack([iw_log_likelihood(vae, x, k=1, rng=gen) for _ in range(repeats)])
    with torch.no_grad():
        mu, logvar = vae.encode(x)
        kl = binarized_kl(mu, logvar, 0.0).sum(1)
        elbo = torch.stack([
            -vae.reconstruction_nll(
                x, vae.decode(mu + (0.5 * logvar).exp() * torch.randn(mu.shape, generator=gen)))
            - kl for _ in range(repeats)])
    se = math.sqrt(iw1.var().item() / iw1.numel() + elbo.var().item() / elbo.numel())
    assert abs(iw1.mean().item() - elbo.mean().item()) < 4 * se + 1e-3


def test_bound_tightens_with_k(x, trained):
    means = [iw_log_likelihood(trained, x, k=k, rng=torch.Generator().manual_seed(3))
             .mean().item() for k in (1, 10, 100)]
    assert means[0] < means[1] < means[2]


def test_the_bound_is_the_shared_importance_sampled_estimate(x, trained):
    """The diagnostics and the generative classifier score with one estimator: the same
    draws give the same numbers."""
    bound = iw_log_likelihood(trained, x, k=30, rng=torch.Generator().manual_seed(4))
    shared = log_likelihood(trained, x, 30, batch_size=diagnostics.BATCH_SIZE,
                            rng=torch.Generator().manual_seed(4))[0]
    assert torch.equal(bound, shared)


def test_summarize_agrees_with_the_single_diagnostics(x, trained):
    stats = diagnose(trained, x, k=10, rng=torch.Generator().manual_seed(5))
    assert set(stats) == {"recon", "kl", "active_units", "collapsed", "sign_imbalance", "iw_ll"}
    assert stats["recon"] == pytest.approx(reconstruction_error(trained, x).mean().item())
    assert stats["kl"] == pytest.approx(kl_per_dimension(trained, x).sum().item())
    assert stats["active_units"] == active_units(trained, x)
    assert stats["collapsed"] == collapsed_dimensions(trained, x)
    imbalance = (sign_balance(trained, x) - 0.5).abs().mean().item()
    assert stats["sign_imbalance"] == pytest.approx(imbalance)
    iw = iw_log_likelihood(trained, x, k=10, rng=torch.Generator().manual_seed(5))
    assert stats["iw_ll"] == pytest.approx(iw.mean().item())


@pytest.mark.parametrize("diagnostic", [reconstruction_error, kl_per_dimension, active_units,
                                        collapsed_dimensions, sign_balance, iw_log_likelihood,
                                        diagnose, posterior_moments])
def test_bad_data_raises(x, diagnostic):
    vae = _vae(0.0)
    with pytest.raises(ValueError, match="empty"):
        diagnostic(vae, x[:0])
    poisoned = x[:10].clone()
    poisoned[4, 0, 3, 3] = math.nan
    with pytest.raises(ValueError, match="NaN"):
        diagnostic(vae, poisoned)
    with pytest.raises(ValueError, match="shape"):
        diagnostic(vae, x[:10, :, :20])


def test_iw_needs_a_sample(x):
    with pytest.raises(ValueError, match="k"):
        iw_log_likelihood(_vae(0.0), x, k=0)
