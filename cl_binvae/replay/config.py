"""How replay is drawn, labelled and weighted: the replay plugin's configuration.

Plain Python, no torch (see ``cl_binvae.model.config``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

REPLAY_LABELS = ("solver", "prior")


@dataclass(frozen=True)
class ReplayConfig:
    """How replay is drawn, labelled and weighted, and how the generator is trained.

    ``replay_size``: replayed samples per iteration (None: the current batch's size).
    ``replay_weight``: weight of the replay loss; None gives van de Ven's 1 - 1/t.
    ``temperature``: None labels replay with hard labels (argmax over the classes seen so
    far); a value > 0 distills the frozen solver's soft targets at that temperature.
    ``input_mean``/``input_std``: the normalization the solver's inputs went through, per
    channel, so the generator learns and samples in [0, 1] and replay is mapped back.
    ``replay_labels``: 'solver' labels replay by the frozen solver; 'prior' by the class the
    generator's class-conditional prior drew it from.
    ``active_classes``: van de Ven's class-IL protocol: current and replay losses over the
    classes seen so far only (default: over all of the solver's outputs).
    """

    replay_size: int | None = None
    replay_weight: float | None = None
    temperature: float | None = None
    generator_iterations: int = 2000
    generator_batch_size: int = 128
    generator_lr: float = 1e-3
    input_mean: Sequence[float] | None = None
    input_std: Sequence[float] | None = None
    replay_labels: str = "solver"
    active_classes: bool = False

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
        if self.replay_labels not in REPLAY_LABELS:
            raise ValueError(f"replay_labels must be one of {REPLAY_LABELS}, "
                             f"got {self.replay_labels!r}")
        if self.replay_labels == "prior" and self.temperature is not None:
            raise ValueError("replay labelled by the prior has hard labels: drop temperature "
                             "(distillation needs the frozen solver's soft targets)")
