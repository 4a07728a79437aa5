"""measure_footprint counts what a strategy's plugins keep: datasets and input-shaped tensors
as stored samples, every other tensor once as extra parameters, the model's own weights and
optimizer states never."""

from __future__ import annotations

from dataclasses import fields
from types import SimpleNamespace

import torch
from avalanche.training.plugins import EvaluationPlugin
from torch import nn
from torch.utils.data import TensorDataset

from cl_binvae.suite.footprint import Footprint, measure_footprint
from cl_binvae.suite.rundir import FOOTPRINT_KEYS

SHAPE = (1, 4, 4)


class Keeper:
    """A plugin as Avalanche's are: plain attributes holding what it keeps."""

    def __init__(self, **kept: object) -> None:
        self.__dict__.update(kept)


def strategy_with(*plugins: object, **attributes: object) -> SimpleNamespace:
    model = nn.Linear(16, 3)  # 51 parameters
    return SimpleNamespace(model=model, plugins=list(plugins), **attributes)


def test_the_record_has_the_footprints_fields() -> None:
    assert FOOTPRINT_KEYS == tuple(f.name for f in fields(Footprint))


def test_stored_samples_are_datasets_and_input_shaped_tensors() -> None:
    """A reservoir's weights beside its dataset (one per sample) go with the samples; a
    tensor of another length beside it is extra."""
    buffer = TensorDataset(torch.zeros(30, *SHAPE), torch.zeros(30))
    exemplars = [torch.zeros(5, *SHAPE), torch.zeros(7, *SHAPE)]
    group = Keeper(buffer=buffer, weights=torch.zeros(30), order=torch.zeros(4))
    policy = Keeper(groups={0: group})
    strategy = strategy_with(Keeper(exemplars=exemplars), storage_policy=policy)
    assert measure_footprint(strategy, SHAPE) == Footprint(51, 4, 42)


def test_modules_and_tensors_count_once_and_the_model_and_optimizers_never() -> None:
    strategy = strategy_with()
    copy = nn.Linear(16, 3)
    importances = {"weight": torch.ones(3, 16)}
    plugin = Keeper(
        old_model=copy, again=[copy, copy.weight],  # one copy, however often it is referred to
        importances=importances, history=[importances],
        solver=strategy.model, solver_weight=strategy.model.weight,  # the model: not extra
        optimizer=torch.optim.Adam(copy.parameters()),
        loader_iter=iter(torch.utils.data.DataLoader(TensorDataset(torch.zeros(9, *SHAPE)))))
    strategy.plugins += [plugin, EvaluationPlugin()]
    assert measure_footprint(strategy, SHAPE) == Footprint(51, 51 + 48, 0)


def test_a_modules_tensors_are_numbers_and_its_buffers_count() -> None:
    """An input-shaped parameter is a weight, not a stored sample; buffers (batch-norm
    statistics) count on both sides, the model's and a copy's."""
    strategy = strategy_with()
    strategy.model = nn.Sequential(nn.Linear(16, 3), nn.BatchNorm1d(3))  # 51 + 6 + 7
    weights = nn.Module()
    weights.kernel = nn.Parameter(torch.zeros(2, *SHAPE))  # 32
    strategy.plugins += [Keeper(copy=nn.Sequential(nn.BatchNorm1d(3)), weights=weights),
                         Keeper(inner=Keeper(evaluator=EvaluationPlugin()))]
    assert measure_footprint(strategy, SHAPE) == Footprint(64, 13 + 32, 0)


def test_a_strategy_that_keeps_nothing() -> None:
    assert measure_footprint(strategy_with(Keeper(count=3, name="x")), SHAPE) == \
        Footprint(51, 0, 0)
