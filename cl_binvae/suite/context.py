"""What a method's builder gets: the run, its stream and protocol, and the shared pieces.

Every builder in :mod:`cl_binvae.methods` (and every user's) receives a
:class:`MethodContext`. Its helpers build the protocol's models in a fixed order (solver,
optimizer, then generator), so every method sees the same initial weights for a seed, and
hand each strategy the driver's plugins (progress bar, finite-loss check) and evaluator.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from avalanche.core import SupervisedPlugin
from torch import nn

from cl_binvae.model.priors import CodesPrior
from cl_binvae.model.vae import BaseVAE, build_vae
from cl_binvae.replay.config import ReplayConfig
from cl_binvae.replay.strategy import BinVAEGenerativeReplay
from cl_binvae.suite.driver_plugins import EpochBudget
from cl_binvae.suite.presets import Protocol
from cl_binvae.suite.replay_settings import ReplaySettings
from cl_binvae.suite.run_config import RunConfig
from cl_binvae.suite.solvers import build_solver
from cl_binvae.suite.streams import Stream, build_stream
from cl_binvae.training.tensor_strategy import TensorStrategy

_PROTOCOL = object()  # "the protocol's iterations" (None already means one pass per epoch)


def check_fits(run: RunConfig, stream: Stream) -> None:
    """``ValueError`` for a run whose generator cannot hold the stream's classes, before
    anything is written: the codes prior keeps at most ``CodesPrior.capacity`` classes apart,
    and its classes are (task, label) pairs."""
    if not _uses_codes(run):
        return
    generator = run.protocol.generator
    n_classes = stream.n_outputs * (stream.n_experiences if run.scenario == "task" else 1)
    if n_classes > CodesPrior.capacity(generator.z_dim):
        raise ValueError(f"the codes prior with z_dim={generator.z_dim} keeps at most "
                         f"{CodesPrior.capacity(generator.z_dim)} classes apart, but this "
                         f"stream has {n_classes}; use fewer experiences or another prior")


def check_sweep_fits(runs: Sequence[RunConfig], data_root: str | None) -> None:
    """:func:`check_fits` for every run of a sweep before the first one trains (building each
    stream a codes-prior run uses once), so that no run is left half a sweep."""
    streams: dict[Any, Stream] = {}
    for run in filter(_uses_codes, runs):
        config = run.stream_config()
        if config not in streams:
            streams[config] = build_stream(config, data_root)
        check_fits(run, streams[config])


def _uses_codes(run: RunConfig) -> bool:
    return isinstance(run.settings, ReplaySettings) and run.protocol.generator.prior.conditional


@dataclass
class MethodContext:
    """One run's stream, protocol and device, plus what every strategy must be given.

    ``plugins``: the driver's plugins; pass them to the strategy (the helpers do).
    ``evaluator``: per-experience accuracy (the driver reads it) and the chosen loggers.
    """

    run: RunConfig
    stream: Stream
    device: str
    plugins: list[SupervisedPlugin]
    evaluator: Any

    @property
    def protocol(self) -> Protocol:
        """The run's protocol: models, iterations, batch sizes, learning rates."""
        return self.run.protocol

    @property
    def settings(self) -> Any:
        """The method's settings for this run (``ReplaySettings`` for our replay methods)."""
        return self.run.settings

    def solver(self) -> nn.Module:
        """A fresh solver for the stream: one head, or one per task in task-IL."""
        n_tasks = self.stream.n_experiences if self.run.scenario == "task" else 1
        return build_solver(self.stream.input_shape, self.stream.n_outputs, n_tasks,
                            self.protocol.solver)

    def optimizer(self, model: nn.Module) -> torch.optim.Optimizer:
        """Adam at the protocol's learning rate."""
        return torch.optim.Adam(model.parameters(), lr=self.protocol.lr)

    def new_generator(self) -> BaseVAE:
        """A fresh generator for replay, with the run's r and prior."""
        return build_vae(self.stream.input_shape, self.protocol.generator)

    def replay_config(self) -> ReplayConfig:
        """How our plugin replays: the protocol's sizes and rates, the run's replay settings.
        ``ValueError`` for a method registered without ``ReplaySettings``."""
        protocol, settings = self.protocol, self.settings
        if not self.run.method_record.replays:
            raise ValueError(f"method {self.run.strategy} uses our replay plugin, so it must "
                             "be registered with settings=ReplaySettings()")
        return ReplayConfig(replay_size=protocol.replay_size,
                            temperature=protocol.temperature if settings.distill else None,
                            generator_iterations=protocol.generator_iterations,
                            generator_batch_size=protocol.batch_size,
                            generator_lr=protocol.generator_lr,
                            replay_labels=settings.replay_labels,
                            active_classes=settings.active_classes)

    def memory_budget(self) -> int:
        """The samples a rehearsal method may store: the protocol's ``er_samples_per_class``
        for every class of the stream (each experience's classes, counted per experience),
        ER's buffer, so that rehearsal methods compare at equal memory."""
        per_class = self.protocol.er_samples_per_class
        return per_class * sum(map(len, self.stream.classes_per_experience))

    def epoch_budget(self) -> EpochBudget:
        """A plugin that gives epoch-counting strategies the protocol's iteration budget."""
        return EpochBudget(self.protocol.iterations, self.protocol.batch_size)

    def template_kwargs(self, model: nn.Module, optimizer: torch.optim.Optimizer
                        ) -> dict[str, Any]:
        """The keyword arguments every Avalanche template takes, set from the protocol."""
        return {"model": model, "optimizer": optimizer,
                "train_mb_size": self.protocol.batch_size,
                "eval_mb_size": self.protocol.eval_batch_size, "device": self.device,
                "evaluator": self.evaluator}

    def tensor_strategy(self, *, iterations: Any = _PROTOCOL,
                        plugins: Sequence[SupervisedPlugin] = ()) -> TensorStrategy:
        """Plain fine-tuning from tensors with ``plugins`` added: ``iterations`` minibatches
        per experience (default: the protocol's; None: one pass per epoch)."""
        model = self.solver()
        iterations = self.protocol.iterations if iterations is _PROTOCOL else iterations
        return TensorStrategy(criterion=nn.CrossEntropyLoss(), train_iterations=iterations,
                              plugins=[*self.plugins, *plugins],
                              **self.template_kwargs(model, self.optimizer(model)))

    def generative_replay(self, *, plugins: Sequence[SupervisedPlugin] = ()
                          ) -> BinVAEGenerativeReplay:
        """Solver, generator and our replay plugin at the protocol's settings, with
        ``plugins`` added (e.g. a regularizer such as Avalanche's SI)."""
        model = self.solver()
        optimizer = self.optimizer(model)
        replay = self.replay_config()
        return BinVAEGenerativeReplay(generator=self.new_generator(), replay=replay,
                                      train_iterations=self.protocol.iterations,
                                      plugins=[*self.plugins, *plugins],
                                      **self.template_kwargs(model, optimizer))
