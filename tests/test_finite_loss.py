"""A diverged solver stops every driver strategy with FloatingPointError, weights untouched."""

from __future__ import annotations

import pytest
import torch

from cl_binvae.suite.experiment import build_strategy
from cl_binvae.suite.run_config import RunConfig
from cl_binvae.suite.streams import build_stream


@pytest.mark.parametrize("strategy", ["naive", "er", "avalanche_gr", "dgr"])
def test_nan_solver_loss_stops_training(strategy, data_root, one_thread):
    run = RunConfig(strategy=strategy, iterations=2, n_experiences=2)
    stream = build_stream(run.stream_config(), data_root)
    learner = build_strategy(run, stream, "cpu")
    last = list(learner.model.parameters())[-1]  # the output bias: every logit turns NaN
    with torch.no_grad():
        last.fill_(float("nan"))
    first = next(learner.model.parameters()).detach().clone()
    with pytest.raises(FloatingPointError, match=r"solver loss is nan in experience 0"):
        learner.train(stream.benchmark.train_stream[0])
    assert torch.equal(next(learner.model.parameters()), first)  # no step was taken
