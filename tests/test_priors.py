"""Latent priors: sampling, fitting, the class codes, state round trips and bad input."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from cl_binvae.model.config import PRIOR_NAMES
from cl_binvae.model.diagnostics import replay_class_balance
from cl_binvae.model.priors import PRIORS, CodesPrior, FittedPrior, PriorConfig, build_prior
from cl_binvae.model.vae import VAEConfig, build_vae

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def ready_prior(name: str, r: float = 1.0, z_dim: int = 6, seed: int = 0):
    """A prior of ``name`` that can sample: fitted is fitted, codes has seen classes 0-3
    (fewer when z_dim cannot keep four apart)."""
    prior = build_prior(PriorConfig(name, components=3, seed=seed), r, z_dim)
    torch.manual_seed(seed)
    if name == "fitted":
        prior.fit(torch.randn(500, z_dim) * 2 + 1)
    prior.observe(torch.arange(min(4, z_dim)))
    return prior


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", list(PRIORS))
def test_sampling_gives_the_shape_dtype_and_device_asked_for(name, device):
    prior = ready_prior(name).to(device)
    z, classes = prior.sample(7, device=device)
    assert z.shape == (7, 6) and z.dtype == torch.float32 and z.device.type == device
    assert (classes is None) == (not prior.conditional)
    if classes is not None:
        assert classes.shape == (7,) and classes.dtype == torch.long
        assert classes.device.type == device
    assert prior.log_prob(z).shape == (7,)


@pytest.mark.parametrize("name", list(PRIORS))
def test_log_prob_is_a_density(name):
    """In one dimension, exp(log_prob) integrates to 1 on a fine grid."""
    prior = ready_prior(name, z_dim=1)
    grid = torch.linspace(-15, 15, 30001).unsqueeze(1)
    mass = prior.log_prob(grid).exp().sum() * (grid[1] - grid[0])
    assert float(mass) == pytest.approx(1.0, abs=1e-3)


def test_fitted_prior_recovers_a_known_two_component_mixture():
    torch.manual_seed(0)
    means = torch.tensor([[-3.0, 2.0, 0.0], [3.0, -2.0, 1.0]])
    z = torch.cat([means[0] + 0.5 * torch.randn(3000, 3), means[1] + 0.5 * torch.randn(1000, 3)])
    prior = FittedPrior(r=0.0, z_dim=3, components=2, seed=0)
    prior.fit(z)
    order = prior.means[:, 0].argsort()
    assert torch.allclose(prior.means[order], means, atol=0.1)
    assert torch.allclose(prior.log_weights[order].exp(), torch.tensor([0.75, 0.25]), atol=0.02)
    assert torch.allclose(prior.log_vars.exp(), torch.full((2, 3), 0.25), atol=0.05)
    samples, _ = prior.sample(20_000, rng=torch.Generator().manual_seed(1))
    assert (samples[:, 0] < 0).float().mean().item() == pytest.approx(0.75, abs=0.02)


def test_codes_keep_old_modes_when_a_class_arrives():
    prior = CodesPrior(r=2.0, z_dim=32, seed=5)
    prior.observe(torch.tensor([1, 0, 1]))
    before = prior.modes(torch.tensor([0, 1])).clone()
    prior.observe(torch.tensor([2, 3, 0]))
    assert torch.equal(prior.modes(torch.tensor([0, 1])), before)
    codes = prior.codes
    assert set(codes.unique().tolist()) == {-1.0, 1.0}
    distance = (32 - codes @ codes.T) / 2  # Hamming
    off_diagonal = distance[~torch.eye(4, dtype=torch.bool)]
    assert off_diagonal.min() >= 8  # a quarter of the bits
    # Deterministic from the seed and the arrival order; another seed gives other codes.
    again = CodesPrior(r=2.0, z_dim=32, seed=5)
    again.observe(torch.tensor([0, 1]))
    again.observe(torch.tensor([2, 3]))
    assert torch.equal(again.codes, codes)
    other = CodesPrior(r=2.0, z_dim=32, seed=6)
    other.observe(torch.tensor([0, 1, 2, 3]))
    assert not torch.equal(other.codes, codes)


def test_codes_sample_seen_classes_only_and_about_uniformly():
    prior = CodesPrior(r=3.0, z_dim=16, seed=0)
    prior.observe(torch.tensor([0, 4, 7]))
    z, classes = prior.sample(30_000, rng=torch.Generator().manual_seed(0))
    counts = torch.bincount(classes, minlength=8)
    assert set(classes.unique().tolist()) == {0, 4, 7}
    assert torch.allclose(counts[[0, 4, 7]].float() / 30_000, torch.full((3,), 1 / 3), atol=0.01)
    # Each sample sits around its own class's mode.
    assert torch.allclose(z[classes == 4].mean(0), prior.modes(torch.tensor([4]))[0], atol=0.05)


def test_codes_kl_equals_the_closed_form():
    prior = CodesPrior(r=1.5, z_dim=8, seed=0)
    prior.observe(torch.tensor([0, 1, 2]))
    torch.manual_seed(0)
    mu, logvar = torch.randn(5, 8), torch.randn(5, 8)
    classes = torch.tensor([2, 0, 1, 1, 2])
    expected = kl_divergence(Normal(mu, (0.5 * logvar).exp()),
                             Normal(prior.modes(classes), torch.ones(5, 8)))
    assert torch.allclose(prior.kl(mu, logvar, classes), expected, atol=1e-5)
    # r = 0: the unconditional VAE's KL, whatever the class.
    plain = CodesPrior(r=0.0, z_dim=8, seed=0)
    plain.observe(classes)
    standard = kl_divergence(Normal(mu, (0.5 * logvar).exp()), Normal(0.0, 1.0))
    assert torch.allclose(plain.kl(mu, logvar, classes), standard, atol=1e-5)


@pytest.mark.parametrize("name", ["fitted", "codes"])  # the others have no state
def test_state_dict_round_trip_gives_identical_samples(name):
    prior = ready_prior(name, seed=3)
    fresh = build_prior(PriorConfig(name, components=3, seed=3), 1.0, 6)
    with pytest.raises(Exception):  # noqa: B017 - unfitted or without classes: cannot sample
        fresh.sample(1)
    fresh.load_state_dict(prior.state_dict())
    a = prior.sample(50, rng=torch.Generator().manual_seed(9))
    b = fresh.sample(50, rng=torch.Generator().manual_seed(9))
    assert torch.equal(a[0], b[0])
    assert (a[1] is None and b[1] is None) or torch.equal(a[1], b[1])


@pytest.mark.parametrize("name", list(PRIORS))
def test_a_generator_carries_its_prior_through_its_state_dict(name):
    config = VAEConfig(r=0.5, z_dim=6, hidden=(16,), prior=PriorConfig(name, components=3))
    vae = build_vae((1, 4, 4), config)
    vae.prior.load_state_dict(ready_prior(name, r=0.5).state_dict())
    copy = build_vae((1, 4, 4), config)
    state = vae.state_dict()
    assert any(key.startswith("prior.") for key in state) == (name in ("fitted", "codes"))
    copy.load_state_dict(state)
    a = vae.sample_with_classes(10, rng=torch.Generator().manual_seed(0))
    b = copy.sample_with_classes(10, rng=torch.Generator().manual_seed(0))
    assert torch.equal(a[0], b[0])


def test_the_codes_prior_changes_the_generators_kl():
    config = VAEConfig(r=2.0, z_dim=6, hidden=(16,), prior=PriorConfig("codes"))
    vae = build_vae((1, 4, 4), config).eval()
    vae.prior.observe(torch.tensor([0, 1]))
    x = torch.rand(3, 1, 4, 4)
    mu, logvar = vae.encode(x)
    expected = 0.5 * ((mu - vae.prior.modes(torch.tensor([1, 1, 0]))).pow(2) + logvar.exp()
                      - logvar - 1).sum(1).mean()
    assert vae.loss(x, torch.tensor([1, 1, 0]))["kl"].item() == pytest.approx(expected.item(),
                                                                              rel=1e-5)
    with pytest.raises(ValueError, match="class of every image"):
        vae.loss(x)


def test_the_light_config_knows_every_prior():
    assert tuple(PRIORS) == PRIOR_NAMES


def test_bad_input():
    with pytest.raises(ValueError, match="unknown prior 'gmm'"):
        PriorConfig("gmm")
    with pytest.raises(ValueError, match="K >= 1"):
        PriorConfig("fitted", components=0)
    with pytest.raises(ValueError, match="unknown prior"):
        VAEConfig(prior=PriorConfig("nope"))
    with pytest.raises(RuntimeError, match="not been fitted"):
        FittedPrior(0.0, 4, 2, 0).sample(3)
    with pytest.raises(ValueError, match="cannot fit 5 components"):
        FittedPrior(0.0, 4, 5, 0).fit(torch.randn(3, 4))
    codes = CodesPrior(1.0, 4, 0)
    with pytest.raises(ValueError, match="no class observed"):
        codes.sample(2)
    with pytest.raises(ValueError, match="at most 4 classes"):
        codes.observe(torch.arange(5))
    codes.observe(torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="never observed"):
        codes.kl(torch.zeros(1, 4), torch.zeros(1, 4), torch.tensor([7]))
    with pytest.raises(ValueError, match=">= 0"):
        codes.observe(torch.tensor([-1]))


def test_replay_class_balance_on_a_hand_made_case():
    tasks = torch.zeros(8, dtype=torch.long)
    labels = torch.tensor([0, 0, 0, 0, 0, 0, 1, 1])
    seen = [(0, 0), (0, 1), (0, 2)]
    out = replay_class_balance(tasks, labels, seen)
    assert out["share_t0_c0"] == 0.75 and out["share_t0_c1"] == 0.25
    assert out["share_t0_c2"] == 0.0
    entropy = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    assert out["balance"] == pytest.approx(entropy / math.log(3))
    uniform = replay_class_balance(torch.tensor([0, 1]), torch.tensor([0, 0]), [(0, 0), (1, 0)])
    assert uniform == {"share_t0_c0": 0.5, "share_t1_c0": 0.5, "balance": pytest.approx(1.0)}
    with pytest.raises(ValueError, match="at least one seen class"):
        replay_class_balance(tasks, labels, [])


def test_run_settings_name_one_protocol_once():
    """At r = 0 the standard and codes priors are the plain VAE's N(0, I): one name, one id;
    an int r is its float; the quick preset is the paper preset cut to 300 iterations; the
    stream's default number of experiences is no change."""
    from cl_binvae.suite.replay_settings import ReplaySettings
    from cl_binvae.suite.run_config import RunConfig

    def replay(strategy: str, **settings) -> RunConfig:
        return RunConfig(strategy=strategy, settings=ReplaySettings(**settings))

    plain = replay("dgr", prior="mixture")
    assert replay("dgr").method == "dgr prior=fitted20"  # the default is the fitted prior
    for prior in ("standard", "codes"):
        assert replay("dgr", prior=prior).run_id == plain.run_id
    assert replay("binvae_gr", r=1).run_id == replay("binvae_gr", r=1.0).run_id
    assert replay("binvae_gr", r=1, prior="codes").method == "binvae_gr r=1 prior=codes"
    assert replay("binvae_gr", r=1, prior="codes").r_zero_twin() == plain
    assert RunConfig(strategy="dgr", preset="quick") == RunConfig(strategy="dgr", iterations=300)
    assert RunConfig(strategy="dgr", n_experiences=5) == RunConfig(strategy="dgr")
    assert RunConfig(strategy="dgr", stream="permuted_mnist", n_experiences=10) == \
        RunConfig(strategy="dgr", stream="permuted_mnist")
