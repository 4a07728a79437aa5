"""``BinVAEGenerativeReplay``: a solver, a binarized-VAE generator and the replay plugin in
one tensor-fed Avalanche strategy, with the reference protocol's defaults."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from avalanche.core import BasePlugin
from avalanche.training.plugins.evaluation import default_evaluator
from torch import nn

from cl_binvae.model.vae import BaseVAE
from cl_binvae.replay.plugin import BinVAEReplayPlugin, ReplayConfig
from cl_binvae.training.tensor_strategy import TensorStrategy


class BinVAEGenerativeReplay(TensorStrategy):
    """Solver + binarized-VAE generator + :class:`BinVAEReplayPlugin`, with the reference
    protocol's defaults (batch 128 + 128 replayed, 2000 iterations per experience)."""

    def __init__(
        self,
        *,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        generator: BaseVAE,
        replay: ReplayConfig | None = None,
        criterion: nn.Module | None = None,
        train_mb_size: int = 128,
        train_iterations: int | None = 2000,
        eval_mb_size: int = 1000,
        device: str | torch.device = "cpu",
        plugins: Sequence[BasePlugin] | None = None,
        evaluator: Any = default_evaluator,
        eval_every: int = -1,
    ) -> None:
        self.replay_plugin = BinVAEReplayPlugin(generator, replay)
        super().__init__(
            model=model, optimizer=optimizer, criterion=criterion or nn.CrossEntropyLoss(),
            train_mb_size=train_mb_size, train_epochs=1, eval_mb_size=eval_mb_size,
            device=device, plugins=[self.replay_plugin, *(plugins or [])],
            evaluator=evaluator, eval_every=eval_every, train_iterations=train_iterations)
