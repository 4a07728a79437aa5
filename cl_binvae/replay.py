"""Deep generative replay as an Avalanche plugin, with a binarized VAE as the generator.

Shin et al. 2017, as refined by van de Ven et al. ("Three scenarios for continual learning"):
while learning experience t > 1, every training iteration appends a replay batch sampled from a
frozen copy of the previous generator and labelled by a frozen copy of the previous solver, and
the loss becomes (1/t) * current + (1 - 1/t) * replay. After each experience the generator
learns the experience's data plus its own replay, so it does not forget either.

The plugin works inside any ``SupervisedTemplate`` (Naive, EWC, LwF, ...): it only touches the
minibatch before the forward pass and the loss before the backward pass.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from avalanche.core import SupervisedPlugin
from avalanche.models.utils import avalanche_forward
from torch import nn

from cl_binvae.tensor_data import TensorBatches, dataset_tensors
from cl_binvae.vae import BaseVAE


@dataclass(frozen=True)
class ReplayConfig:
    """How replay is drawn, labelled and weighted, and how the generator is trained.

    ``replay_size``: replayed samples per iteration (None: the current batch's size).
    ``replay_weight``: weight of the replay loss; None gives van de Ven's 1 - 1/t.
    ``temperature``: None labels replay with hard labels (argmax over the classes seen so
    far); a value > 0 distills the frozen solver's soft targets at that temperature.
    ``input_mean``/``input_std``: the normalization the solver's inputs went through, per
    channel, so the generator learns and samples in [0, 1] and replay is mapped back.
    """

    replay_size: int | None = None
    replay_weight: float | None = None
    temperature: float | None = None
    generator_iterations: int = 2000
    generator_batch_size: int = 128
    generator_lr: float = 1e-3
    input_mean: Sequence[float] | None = None
    input_std: Sequence[float] | None = None

    def __post_init__(self) -> None:
        if self.replay_size is not None and self.replay_size <= 0:
            raise ValueError(f"replay_size must be > 0, got {self.replay_size}")
        if self.replay_weight is not None and not 0 <= self.replay_weight <= 1:
            raise ValueError(f"replay_weight must be in [0, 1], got {self.replay_weight}")
        if self.temperature is not None and not (math.isfinite(self.temperature)
                                                 and self.temperature > 0):
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if self.generator_iterations <= 0 or self.generator_batch_size <= 0:
            raise ValueError("generator_iterations and generator_batch_size must be > 0")
        if not (math.isfinite(self.generator_lr) and self.generator_lr > 0):
            raise ValueError(f"generator_lr must be > 0, got {self.generator_lr}")
        if (self.input_mean is None) != (self.input_std is None):
            raise ValueError("give both input_mean and input_std, or neither")
        if self.input_std is not None and any(s <= 0 for s in self.input_std):
            raise ValueError(f"input_std must be > 0, got {self.input_std}")


class BinVAEReplayPlugin(SupervisedPlugin):
    """Generative replay for any Avalanche ``SupervisedTemplate``, e.g.
    ``Naive(model, opt, plugins=[BinVAEReplayPlugin(build_vae((1, 28, 28), VAEConfig(r=0.3)))])``.

    Experiences must each carry a single task label. In task-IL the replay batch is spread
    uniformly over the previous tasks with their task labels.
    """

    def __init__(self, generator: BaseVAE, config: ReplayConfig | None = None) -> None:
        super().__init__()
        if not isinstance(generator, BaseVAE):
            raise TypeError(f"generator must be a cl_binvae BaseVAE, got {type(generator)!r}")
        self.generator = generator
        self.config = config or ReplayConfig()
        self.generator_optimizer = torch.optim.Adam(generator.parameters(),
                                                    lr=self.config.generator_lr)
        self.experiences_seen = 0
        self.classes_by_task: dict[int, set[int]] = {}
        self.frozen_generator: BaseVAE | None = None
        self.frozen_solver: nn.Module | None = None
        self._inputs_checked = False
        self._n_current = 0
        self._replay_targets: torch.Tensor | None = None
        self._class_table: torch.Tensor | None = None

    # -- the lifecycle -------------------------------------------------------------------------
    def before_training_exp(self, strategy: Any, **kwargs: Any) -> None:
        """Check the experience against the generator before the first iteration."""
        for module in (self.generator, self.frozen_generator, self.frozen_solver):
            if module is not None:  # restored copies may still sit on the CPU
                module.to(strategy.device)
        tasks = getattr(strategy.experience, "task_labels", [0])
        if len(tasks) != 1:
            raise ValueError(f"generative replay needs one task label per experience, got "
                             f"{list(tasks)}; multi-task experiences are not supported")
        x0 = strategy.experience.dataset[0][0]
        if tuple(x0.shape) != self.generator.input_shape:
            raise ValueError(f"the generator makes images of shape {self.generator.input_shape} "
                             f"but the stream's inputs have shape {tuple(x0.shape)}")

    def before_training_iteration(self, strategy: Any, **kwargs: Any) -> None:
        """Append a replay batch (inputs, labels and task labels) to the minibatch."""
        if not self._inputs_checked:
            self._check_solver_inputs(strategy.mb_x)
        self._n_current = len(strategy.mb_x)
        if self.frozen_generator is None:
            return
        n = self.config.replay_size or self._n_current
        x_r, t_r = self._sample_replay(n, strategy.device)
        with torch.no_grad():
            logits = avalanche_forward(self.frozen_solver, x_r, t_r)
        # The frozen solver may only name classes seen before; the student is scored over all
        # its outputs, so replay also pushes down the new classes on old-looking inputs.
        masked = logits.masked_fill(~self._allowed_classes(t_r, logits.shape[1]), -math.inf)
        y_r = masked.argmax(1)
        t_cfg = self.config.temperature
        self._replay_targets = None if t_cfg is None else F.softmax(masked / t_cfg, dim=1)
        mbatch = strategy.mbatch
        mbatch[0] = torch.cat([mbatch[0], x_r])
        mbatch[1] = torch.cat([mbatch[1], y_r.to(mbatch[1].dtype)])
        if len(mbatch) >= 3:  # Avalanche puts task labels last; 2-element batches have none
            mbatch[-1] = torch.cat([mbatch[-1], t_r.to(mbatch[-1].dtype)])

    def before_backward(self, strategy: Any, **kwargs: Any) -> None:
        """Swap the template's loss on the joined batch for the weighted current + replay loss.

        Subtracting exactly what the template added keeps other plugins' terms (EWC's
        penalty, LwF's distillation) whichever order the plugins run in.
        """
        if self.frozen_generator is None:
            return
        out, y, n = strategy.mb_output, strategy.mb_y, self._n_current
        joined = strategy.criterion()
        current = strategy._criterion(out[:n], y[:n])
        replay = self._replay_loss(out[n:], y[n:])
        w = self.replay_weight(self.experiences_seen + 1)
        strategy.loss = strategy.loss - joined + (1 - w) * current + w * replay

    def after_training_exp(self, strategy: Any, **kwargs: Any) -> None:
        """Train the generator on this experience plus its own replay; freeze both copies."""
        x, y, *rest = dataset_tensors(strategy.experience.dataset, strategy.device)
        # Avalanche puts task labels last; datasets of (x, y) pairs have a single task, 0.
        t = rest[-1] if rest else torch.zeros_like(y)
        for task in t.unique().tolist():
            self.classes_by_task.setdefault(int(task), set()).update(
                y[t == task].unique().tolist())
        self._class_table = None
        self.experiences_seen += 1
        self.train_generator(self._to_generator_space(x))
        self.frozen_generator = _frozen_copy(self.generator)
        self.frozen_solver = _frozen_copy(strategy.model)

    # -- the pieces ----------------------------------------------------------------------------
    def replay_weight(self, t: int) -> float:
        """Weight of the replay loss while learning experience ``t`` (counted from 1):
        ``config.replay_weight`` if set, else van de Ven's 1 - 1/t. Solver and generator
        both use it."""
        if self.config.replay_weight is not None:
            return self.config.replay_weight
        return 1.0 - 1.0 / t

    def train_generator(self, x: torch.Tensor) -> None:
        """Train the generator on ``x`` (in [0, 1] space) plus replay from its frozen copy.

        The generator's loss is weighted like the solver's (``replay_weight``).
        """
        cfg, gen = self.config, self.generator
        w = self.replay_weight(self.experiences_seen)
        gen.train()
        batches = TensorBatches([x], cfg.generator_batch_size, iterations=cfg.generator_iterations)
        for (xb,) in batches:
            loss = gen.loss(xb)["loss"]
            if self.frozen_generator is not None:
                replay = self.frozen_generator.sample(len(xb))
                loss = (1 - w) * loss + w * gen.loss(replay)["loss"]
            self.generator_optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.generator_optimizer.step()
        gen.eval()

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue the stream: generator, frozen copies, counters."""
        return {
            "generator": self.generator.state_dict(),
            "generator_optimizer": self.generator_optimizer.state_dict(),
            "frozen_generator": _state_or_none(self.frozen_generator),
            "frozen_solver": _state_or_none(self.frozen_solver),
            "experiences_seen": self.experiences_seen,
            "classes_by_task": {t: sorted(c) for t, c in self.classes_by_task.items()},
        }

    def load_state_dict(self, state: dict[str, Any], solver: nn.Module) -> None:
        """Restore a ``state_dict``; ``solver`` is a model of the frozen solver's architecture."""
        self.generator.load_state_dict(state["generator"])
        self.generator_optimizer.load_state_dict(state["generator_optimizer"])
        self.experiences_seen = int(state["experiences_seen"])
        self.classes_by_task = {int(t): set(c) for t, c in state["classes_by_task"].items()}
        self._class_table = None
        self.frozen_generator = self.frozen_solver = None
        if state["frozen_generator"] is not None:
            self.frozen_generator = _frozen_copy(self.generator)
            self.frozen_generator.load_state_dict(state["frozen_generator"])
            self.frozen_solver = _frozen_copy(solver)
            self.frozen_solver.load_state_dict(state["frozen_solver"])

    # -- helpers -------------------------------------------------------------------------------
    def _sample_replay(self, n: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        x_r = self._to_solver_space(self.frozen_generator.sample(n))
        tasks = torch.tensor(sorted(self.classes_by_task), device=device)
        t_r = tasks[torch.randint(len(tasks), (n,), device=device)]
        return x_r, t_r

    def _allowed_classes(self, t_r: torch.Tensor, n_outputs: int) -> torch.Tensor:
        """(n, n_outputs) mask of the classes each replayed sample's task has seen."""
        table = self._class_table
        if table is None or table.shape[1] != n_outputs or table.device != t_r.device:
            table = torch.zeros(max(self.classes_by_task) + 1, n_outputs, dtype=torch.bool,
                                device=t_r.device)
            for task, classes in self.classes_by_task.items():
                table[task, sorted(classes)] = True
            self._class_table = table  # rebuilt when the classes seen change
        return table[t_r]

    def _replay_loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self._replay_targets is None:
            return F.cross_entropy(logits, y)
        temp = self.config.temperature
        log_p = F.log_softmax(logits / temp, dim=1)
        return -(self._replay_targets * log_p).sum(1).mean() * temp**2

    def _normalization(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        if self.config.input_mean is None:
            return None
        shape = (1, -1) + (1,) * (like.ndim - 2)
        mean = torch.as_tensor(self.config.input_mean, dtype=like.dtype, device=like.device)
        std = torch.as_tensor(self.config.input_std, dtype=like.dtype, device=like.device)
        return mean.view(shape), std.view(shape)

    def _to_generator_space(self, x: torch.Tensor) -> torch.Tensor:
        norm = self._normalization(x)
        if norm is None:
            return x
        # Undoing a normalization leaves rounding error (pixel 0 comes back as -3e-8).
        return (x * norm[1] + norm[0]).clamp(0.0, 1.0)

    def _to_solver_space(self, x: torch.Tensor) -> torch.Tensor:
        norm = self._normalization(x)
        return x if norm is None else (x - norm[0]) / norm[1]

    def _check_solver_inputs(self, x: torch.Tensor) -> None:
        """Refuse inputs the generator cannot model, at the first minibatch, not hours later."""
        if self.generator.config.likelihood == "bernoulli":
            lo, hi = (v.item() for v in torch.aminmax(self._to_generator_space(x)))
            if lo < -1e-4 or hi > 1 + 1e-4:
                raise ValueError(
                    f"the solver's inputs span [{lo:.3g}, {hi:.3g}] but a Bernoulli (BCE) "
                    "generator models [0, 1]; pass the stream's normalization as "
                    "ReplayConfig(input_mean=..., input_std=...) or use a Gaussian likelihood")
        self._inputs_checked = True


def _frozen_copy(module: nn.Module) -> nn.Module:
    frozen = copy.deepcopy(module).eval()
    return frozen.requires_grad_(False)


def _state_or_none(module: nn.Module | None) -> dict[str, Any] | None:
    return None if module is None else module.state_dict()
