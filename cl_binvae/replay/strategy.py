"""Avalanche strategies that train for a fixed number of iterations from tensors.

``TensorStrategy`` is Avalanche's ``SupervisedTemplate`` (Naive fine-tuning) with the per-sample
data loaders replaced by tensor slicing; the lifecycle, plugins and metrics are untouched.
``BinVAEGenerativeReplay`` bundles a solver, a binarized-VAE generator and the replay plugin.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from avalanche.core import BasePlugin
from avalanche.training.plugins.evaluation import default_evaluator
from avalanche.training.templates import SupervisedTemplate
from torch import nn

from cl_binvae.model.vae import BaseVAE
from cl_binvae.replay.plugin import BinVAEReplayPlugin, ReplayConfig
from cl_binvae.replay.tensor_batches import TensorBatches, dataset_tensors


class TensorStrategy(SupervisedTemplate):
    """``SupervisedTemplate`` fed by :class:`TensorBatches`, with no per-sample collation: each
    of the ``train_epochs`` epochs runs ``train_iterations`` minibatches (None: one pass).

    A plugin that installs its own loader in ``before_training_exp`` (Avalanche's
    ``ReplayPlugin``) still does so: the template builds the loader before calling plugins.
    """

    def __init__(self, *, train_iterations: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.train_iterations = train_iterations

    def make_train_dataloader(self, shuffle: bool = True, **kwargs: Any) -> None:
        # Read the 'train' view (no .eval()): random transforms are drawn once per experience.
        tensors = dataset_tensors(self.adapted_dataset, self.device, eval_mode=False)
        self.dataloader = TensorBatches(tensors, self.train_mb_size,
                                        iterations=self.train_iterations, shuffle=shuffle)

    def make_eval_dataloader(self, **kwargs: Any) -> None:
        tensors = dataset_tensors(self.adapted_dataset, self.device)
        self.dataloader = TensorBatches(tensors, self.eval_mb_size, shuffle=False)


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
