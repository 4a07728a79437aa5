"""Deep generative replay as an Avalanche plugin, with a binarized VAE as the generator.

Shin et al. 2017, as refined by van de Ven et al. ("Three scenarios for continual learning"):
while learning experience t > 1, every training iteration appends a replay batch sampled from a
frozen copy of the previous generator and labelled by a frozen copy of the previous solver, and
the loss becomes (1/t) * current + (1 - 1/t) * replay. After each experience the generator
learns the experience's data plus its own replay (``generator_training``), so it does not
forget either.

The plugin works inside any ``SupervisedTemplate`` (Naive, EWC, LwF, ...): it only touches the
minibatch before the forward pass and the loss before the backward pass.

What replay samples is the generator's prior (``cl_binvae.model.priors``): the plugin shows it
the classes of each experience before the generator trains, and fits it afterwards to latents
of what the generator was trained on. With a class-conditional prior, replay can be labelled
with the drawn class instead of the frozen solver's guess (``replay_labels='prior'``).
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
import torch.nn.functional as F
from avalanche.core import SupervisedPlugin
from avalanche.models.utils import avalanche_forward
from torch import nn

from cl_binvae.model.vae import BaseVAE
from cl_binvae.replay.config import REPLAY_LABELS, ReplayConfig
from cl_binvae.replay.generator_training import SAMPLE_CHUNK, fit_prior, train_generator
from cl_binvae.replay.seen_classes import SeenClasses
from cl_binvae.training.normalization import Normalization
from cl_binvae.training.tensor_batches import dataset_tensors

__all__ = ["REPLAY_LABELS", "BinVAEReplayPlugin", "ReplayConfig"]


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
        if self.config.replay_labels == "prior" and not generator.prior.conditional:
            raise ValueError("replay_labels='prior' needs a class-conditional prior (codes), "
                             f"not {type(generator.prior).__name__}")
        self.generator_optimizer = torch.optim.Adam(generator.parameters(),
                                                    lr=self.config.generator_lr)
        self.normalization = Normalization(self.config.input_mean, self.config.input_std)
        self.experiences_seen = 0
        self.seen = SeenClasses()
        self.frozen_generator: BaseVAE | None = None
        self.frozen_solver: nn.Module | None = None
        self._inputs_checked = False
        self._n_current = 0
        self._replay_targets: torch.Tensor | None = None
        self._current_classes: dict[int, set[int]] | None = None  # active classes only

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
        if self.config.active_classes:
            classes = getattr(strategy.experience, "classes_in_this_experience", None)
            if classes is None:
                raise ValueError("active_classes needs experiences that list "
                                 "classes_in_this_experience")
            self._current_classes = {int(tasks[0]): {int(c) for c in classes}}

    def before_training_iteration(self, strategy: Any, **kwargs: Any) -> None:
        """Append a replay batch (inputs, labels and task labels) to the minibatch."""
        if not self._inputs_checked:
            self._check_solver_inputs(strategy.mb_x)
        self._n_current = len(strategy.mb_x)
        if self.frozen_generator is None:
            return
        n = self.config.replay_size or self._n_current
        x_r, t_r, drawn = self._sample_replay(n, strategy.device)
        if self.config.replay_labels == "prior":
            y_r, self._replay_targets = drawn, None
        else:
            y_r, self._replay_targets = self._solver_labels(x_r, t_r, self.config.temperature)
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
        if self.frozen_generator is None and not self.config.active_classes:
            return
        out, y, n = strategy.mb_output, strategy.mb_y, self._n_current
        joined = strategy.criterion()
        if self.config.active_classes:
            t = _task_labels(strategy)
            active = self.seen.mask(out, self._current_classes)
            rows = torch.zeros(len(out), dtype=torch.long, device=out.device) if t is None else t
            out = out.masked_fill(~active[rows], -math.inf)
        current = strategy._criterion(out[:n], y[:n])
        if self.frozen_generator is None:
            strategy.loss = strategy.loss - joined + current
            return
        replay = self._replay_loss(out[n:], y[n:])
        w = self.replay_weight(self.experiences_seen + 1)
        strategy.loss = strategy.loss - joined + (1 - w) * current + w * replay

    def after_training_exp(self, strategy: Any, **kwargs: Any) -> None:
        """Train the generator on this experience plus its own replay; freeze both copies."""
        x, y, *rest = dataset_tensors(strategy.experience.dataset, strategy.device)
        # Avalanche puts task labels last; datasets of (x, y) pairs have a single task, 0.
        t = rest[-1] if rest else torch.zeros_like(y)
        self.seen.add(t, y)
        self.experiences_seen += 1
        x = self.normalization.undo(x)
        ids = None
        if self.generator.prior.conditional:
            ids = self.seen.ids(t, y)
            self.generator.prior.observe(ids)
        w = self.replay_weight(self.experiences_seen)
        train_generator(self.generator, self.generator_optimizer, x, ids,
                        self.frozen_generator, w, self.config.generator_iterations,
                        self.config.generator_batch_size)
        fit_prior(self.generator, x, self.frozen_generator, w)
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

    def replayed_classes(self, n: int, rng: torch.Generator | None = None
                         ) -> tuple[torch.Tensor, torch.Tensor]:
        """Task and frozen-solver label of ``n`` samples from the frozen generator.

        What replay looks like to the solver, whichever labels training uses: the replay
        class-balance diagnostic. ``rng`` keeps the global random stream untouched.
        """
        if self.frozen_generator is None:
            raise ValueError("nothing to replay before the first experience has been learnt")
        device = self.generator.fc_mu.weight.device
        tasks, labels = [], []
        for start in range(0, n, SAMPLE_CHUNK):
            x_r, t_r, _ = self._sample_replay(min(SAMPLE_CHUNK, n - start), device, rng)
            tasks.append(t_r)
            labels.append(self._solver_labels(x_r, t_r, None)[0])
        return torch.cat(tasks).cpu(), torch.cat(labels).cpu()

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue the stream: generator, frozen copies, counters."""
        return {
            "generator": self.generator.state_dict(),
            "generator_optimizer": self.generator_optimizer.state_dict(),
            "frozen_generator": _state_or_none(self.frozen_generator),
            "frozen_solver": _state_or_none(self.frozen_solver),
            "experiences_seen": self.experiences_seen,
            **self.seen.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any], solver: nn.Module) -> None:
        """Restore a ``state_dict``; ``solver`` is a model of the frozen solver's architecture,
        on the device to continue on."""
        self.generator.to(next(solver.parameters()).device)  # its optimizer state follows it
        self.generator.load_state_dict(state["generator"])
        self.generator_optimizer.load_state_dict(state["generator_optimizer"])
        self.experiences_seen = int(state["experiences_seen"])
        self.seen.load_state_dict(state)
        self.frozen_generator = self.frozen_solver = None
        if state["frozen_generator"] is not None:
            self.frozen_generator = _frozen_copy(self.generator)
            self.frozen_generator.load_state_dict(state["frozen_generator"])
            self.frozen_solver = _frozen_copy(solver)
            self.frozen_solver.load_state_dict(state["frozen_solver"])

    # -- helpers -------------------------------------------------------------------------------
    def _sample_replay(self, n: int, device: torch.device, rng: torch.Generator | None = None
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """``n`` replayed inputs (solver space), their task labels, and the class each was
        drawn from (None for an unconditional prior)."""
        images, ids = self.frozen_generator.sample_with_classes(n, rng)
        x_r = self.normalization.apply(images)
        if ids is not None:  # the drawn class fixes the task too
            keys = self.seen.key_table(device)
            return x_r, keys[ids, 0], keys[ids, 1]
        tasks = self.seen.tasks(device)
        t_r = tasks[torch.randint(len(tasks), (n,), device=device, generator=rng)]
        return x_r, t_r, None

    def _solver_labels(self, x_r: torch.Tensor, t_r: torch.Tensor, temperature: float | None
                       ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The frozen solver's hard labels for replay and, at a temperature, soft targets."""
        with torch.no_grad():
            logits = avalanche_forward(self.frozen_solver, x_r, t_r)
        # The frozen solver may only name classes seen before; the student is scored over all
        # its outputs, so replay also pushes down the new classes on old-looking inputs.
        masked = logits.masked_fill(~self.seen.mask(logits)[t_r], -math.inf)
        soft = None if temperature is None else F.softmax(masked / temperature, dim=1)
        return masked.argmax(1), soft

    def _replay_loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self._replay_targets is None:
            return F.cross_entropy(logits, y)
        temp, targets = self.config.temperature, self._replay_targets
        # Classes masked out of the student (active classes) have -inf log-probability and a
        # zero target: their term is 0, not NaN.
        log_p = F.log_softmax(logits / temp, dim=1).masked_fill(targets == 0, 0.0)
        return -(targets * log_p).sum(1).mean() * temp**2

    def _check_solver_inputs(self, x: torch.Tensor) -> None:
        """Refuse inputs the generator cannot model, at the first minibatch, not hours later."""
        if self.generator.config.likelihood == "bernoulli":
            lo, hi = (v.item() for v in torch.aminmax(self.normalization.undo(x)))
            if lo < -1e-4 or hi > 1 + 1e-4:
                raise ValueError(
                    f"the solver's inputs span [{lo:.3g}, {hi:.3g}] but a Bernoulli (BCE) "
                    "generator models [0, 1]; pass the stream's normalization as "
                    "ReplayConfig(input_mean=..., input_std=...) or use a Gaussian likelihood")
        self._inputs_checked = True


def _task_labels(strategy: Any) -> torch.Tensor | None:
    """The minibatch's task labels; None for (x, y) batches, which carry none."""
    return strategy.mbatch[-1] if len(strategy.mbatch) >= 3 else None


def _frozen_copy(module: nn.Module) -> nn.Module:
    frozen = copy.deepcopy(module).eval()
    return frozen.requires_grad_(False)


def _state_or_none(module: nn.Module | None) -> dict[str, Any] | None:
    return None if module is None else module.state_dict()
