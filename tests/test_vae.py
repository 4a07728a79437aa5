"""Tests for cl_binvae.model.vae: every variant trains on real images, and bad input fails clearly."""

from __future__ import annotations

import math

import pytest
import torch

from cl_binvae.model.config import PriorConfig
from cl_binvae.model.vae import MLPVAE, ConvVAE, VAEConfig, build_vae
from cl_binvae.suite.data import ArrayDataset
from cl_binvae.suite.streams import images_to_tensor

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = {"z_dim": 8, "hidden": (64,)}


@pytest.fixture(scope="module")
def mnist_x(mnist: ArrayDataset) -> torch.Tensor:
    return images_to_tensor(mnist.x_train[:512])


@pytest.fixture(scope="module")
def cifar_x(cifar10: ArrayDataset) -> torch.Tensor:
    return images_to_tensor(cifar10.x_train[:256])


def _train(vae: torch.nn.Module, x: torch.Tensor, steps: int, batch_size: int = 64,
           lr: float = 1e-3) -> list[float]:
    """Adam on cycling minibatches of ``x``; returns the loss of every step."""
    torch.manual_seed(0)
    optimizer = torch.optim.Adam(vae.parameters(), lr=lr)
    losses = []
    for step in range(steps):
        start = (step * batch_size) % len(x)
        loss = vae.loss(x[start:start + batch_size])["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def _falls(losses: list[float], window: int = 5, factor: float = 0.9) -> bool:
    """Finite throughout, and the last ``window`` losses below ``factor`` times the first."""
    first, last = losses[:window], losses[-window:]
    return all(map(math.isfinite, losses)) and sum(last) < factor * sum(first)


@pytest.mark.parametrize("variant, beta", [("vae", 1.0), ("beta", 4.0), ("capacity", 4.0)])
@pytest.mark.parametrize("r", [0.0, 1.0])
def test_mlp_variants_learn_mnist(mnist_x, variant, beta, r):
    torch.manual_seed(0)
    config = VAEConfig(r=r, variant=variant, beta=beta, capacity_max=5.0, capacity_steps=40,
                       **TINY)
    vae = build_vae((1, 28, 28), config)
    assert isinstance(vae, MLPVAE)
    assert _falls(_train(vae, mnist_x, steps=40))


def test_conv_vae_learns_cifar(cifar_x):
    torch.manual_seed(0)
    config = VAEConfig(r=1.0, arch="conv", z_dim=8, channels=(8, 16, 32))
    vae = build_vae((3, 32, 32), config)
    assert isinstance(vae, ConvVAE)
    losses = _train(vae, cifar_x, steps=30, batch_size=32, lr=3e-3)
    # Continuous CIFAR pixels keep a high BCE floor (their own entropy), so the drop is small.
    assert _falls(losses, window=3, factor=0.97)


def test_capacity_grows_with_steps_and_is_checkpointed(mnist_x):
    config = VAEConfig(variant="capacity", beta=4.0, capacity_max=10.0, capacity_steps=8, **TINY)
    vae = build_vae((1, 28, 28), config)
    assert vae.capacity() == 0.0
    _train(vae, mnist_x, steps=4)
    assert vae.capacity() == pytest.approx(5.0)

    # Evaluation losses do not advance the schedule.
    vae.eval()
    with torch.no_grad():
        vae.loss(mnist_x[:8])
    assert vae.capacity() == pytest.approx(5.0)

    restored = build_vae((1, 28, 28), config)
    restored.load_state_dict(vae.state_dict())
    assert int(restored.train_steps) == 4 and restored.capacity() == pytest.approx(5.0)

    vae.train()
    _train(vae, mnist_x, steps=20)
    assert vae.capacity() == pytest.approx(10.0)  # capped at capacity_max


def test_other_variants_have_no_capacity(mnist_x):
    vae = build_vae((1, 28, 28), VAEConfig(variant="beta", beta=4.0, **TINY))
    _train(vae, mnist_x, steps=2)
    assert vae.capacity() == 0.0


@pytest.mark.parametrize("arch, shape", [("mlp", (1, 12, 12)), ("mlp", (3, 8, 8)),
                                         ("conv", (3, 32, 32)), ("conv", (1, 16, 24))])
def test_shapes_come_from_the_data(arch, shape):
    config = VAEConfig(arch=arch, z_dim=8, hidden=(32,), channels=(4, 8, 8),
                       prior=PriorConfig("mixture"))  # samples before any fit
    vae = build_vae(shape, config)
    x = torch.rand(5, *shape)
    outputs, mu, logvar = vae(x)
    assert outputs.shape == (5, *shape)
    assert mu.shape == logvar.shape == (5, 8)
    assert vae.sample(3).shape == (3, *shape)
    recon = vae.reconstruct(x)
    assert recon.shape == (5, *shape) and recon.min() >= 0 and recon.max() <= 1


@pytest.mark.parametrize("kwargs, message", [
    ({"r": -1.0}, "r=-1"),
    ({"r": math.nan}, "r=nan"),
    ({"r": math.inf}, "r=inf"),
    ({"variant": "beta", "beta": 0.0}, "beta=0"),
    ({"variant": "beta", "beta": -2.0}, "beta=-2"),
    ({"variant": "capacity", "capacity_max": -1.0}, "-1"),
    ({"variant": "wae"}, "'wae'"),
    ({"likelihood": "poisson"}, "'poisson'"),
    ({"arch": "resnet"}, "'resnet'"),
])
def test_bad_config_raises_naming_the_value(kwargs, message):
    with pytest.raises(ValueError, match=message):
        VAEConfig(**kwargs)


def test_bernoulli_rejects_inputs_outside_unit_interval(mnist_x):
    vae = build_vae((1, 28, 28), VAEConfig(**TINY))
    normalized = (mnist_x[:8] - 0.5) / 0.5
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        vae.loss(normalized)
    # The Gaussian likelihood scores any real inputs.
    gaussian = build_vae((1, 28, 28), VAEConfig(likelihood="gaussian", **TINY))
    assert torch.isfinite(gaussian.loss(normalized)["loss"])


def test_nan_batch_raises(mnist_x):
    vae = build_vae((1, 28, 28), VAEConfig(**TINY))
    x = mnist_x[:8].clone()
    x[3, 0, 5, 5] = math.nan
    with pytest.raises(ValueError, match="NaN"):
        vae.loss(x)


def test_wrong_input_shape_raises(mnist_x):
    vae = build_vae((1, 28, 28), VAEConfig(**TINY))
    with pytest.raises(ValueError, match="shape"):
        vae.loss(mnist_x[:8, :, :27])


def test_empty_batch_raises(mnist_x):
    vae = build_vae((1, 28, 28), VAEConfig(**TINY))
    with pytest.raises(ValueError, match="empty batch"):
        vae.loss(mnist_x[:0])


def test_non_finite_loss_raises_floating_point_error(mnist_x):
    vae = build_vae((1, 28, 28), VAEConfig(**TINY))
    with torch.no_grad():
        vae.fc_logvar.bias[0] = math.inf
    steps = int(vae.train_steps)
    with pytest.raises(FloatingPointError, match="loss"):
        vae.loss(mnist_x[:8])
    assert int(vae.train_steps) == steps  # a failed step does not advance the schedule


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 30, 32), (3, 32, 20)])
def test_conv_needs_sizes_divisible_by_eight(shape):
    with pytest.raises(ValueError, match="divisible by 8"):
        build_vae(shape, VAEConfig(arch="conv"))


def test_conv_needs_channel_axis():
    with pytest.raises(ValueError, match=r"\(C, H, W\)"):
        build_vae((32, 32), VAEConfig(arch="conv"))
