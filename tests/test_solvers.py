"""The solvers' layer layout, and which presets normalise their hidden layers."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cl_binvae.suite.config import SolverConfig
from cl_binvae.suite.presets import protocol_for
from cl_binvae.suite.solvers import build_solver


def _hidden_blocks(model: nn.Module) -> list[list[type]]:
    """The layer types from each hidden Linear up to its ReLU."""
    layers = list(model.trunk)
    starts = [i for i, layer in enumerate(layers) if isinstance(layer, nn.Linear)]
    return [[type(layer) for layer in layers[i:layers.index(next(
        layer for layer in layers[i:] if isinstance(layer, nn.ReLU)), i) + 1]] for i in starts]


@pytest.mark.parametrize("config, shape", [
    (SolverConfig("mlp", (32, 16)), (1, 28, 28)),
    (SolverConfig("conv", (32,), (8, 16)), (3, 32, 32)),
])
@pytest.mark.parametrize("fc_batch_norm", [False, True])
def test_fc_batch_norm_sits_between_each_hidden_layer_and_its_relu(config, shape, fc_batch_norm):
    config = SolverConfig(config.arch, config.hidden, config.channels, fc_batch_norm)
    model = build_solver(shape, 10, config=config)
    middle = [nn.BatchNorm1d] if fc_batch_norm else []
    assert _hidden_blocks(model) == [[nn.Linear, *middle, nn.ReLU]] * len(
        config.hidden if config.arch == "mlp" else config.hidden[-1:])
    assert model(torch.rand(4, *shape)).shape == (4, 10)


def test_only_the_cifar_cpu_preset_normalises_its_hidden_layer():
    assert protocol_for("cpu", "split_cifar10").solver.fc_batch_norm
    for preset, stream in [("paper", "split_cifar10"), ("paper", "split_mnist"),
                           ("cpu", "permuted_mnist"), ("paper", "permuted_mnist")]:
        assert not protocol_for(preset, stream).solver.fc_batch_norm, (preset, stream)
