"""Learning without Forgetting: Avalanche's ``LwFPlugin`` on fine-tuning.

LwF (Li & Hoiem 2017) distils, on the current inputs, the outputs of the model as it was
after the previous experience: over the units of the classes seen before (one head), or over
every earlier task's head (task-IL). Avalanche's loss is ``CE + alpha * KL_T`` (KL between the
softened outputs at temperature T, averaged over the batch, no T^2).

van de Ven et al. ("Three scenarios for continual learning", preprint; T = 2) weigh
``(1/t) CE + (1 - 1/t) T^2 KD``, KD averaged over the t - 1 earlier tasks' replays; times t
(a constant factor per experience, which Adam nearly ignores) that is ``CE + (t - 1) T^2 KD``:
each earlier experience weighs T^2 against the current one. ``--lwf-alpha`` is that weight
per earlier experience (default T^2 = 4): Avalanche's alpha at experience e (from 0) is
``lwf_alpha * e`` with one head, where one KL covers all the classes seen before, and
``lwf_alpha`` in task-IL, where Avalanche already sums one KL per earlier head. KD is a soft
cross-entropy there and a KL here: they differ by the teacher's entropy, a constant.

The model after the previous experience lives in the plugin, outside what a checkpoint saves:
an interrupted run starts over (``resumable=False``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cl_binvae.suite.registry import register_method
from cl_binvae.suite.settings import MethodSettings, flag, require_finite

if TYPE_CHECKING:
    from cl_binvae.suite.context import MethodContext


@dataclass(frozen=True)
class LwFSettings(MethodSettings):
    """LwF's distillation weight per earlier experience and its temperature."""

    lwf_alpha: float = flag(4.0, "weight of each earlier experience's distillation against "
                            "the current loss (van de Ven: T^2; Avalanche's alpha is this x "
                            "the experiences seen, or this in task-IL)")
    lwf_temperature: float = flag(2.0, "distillation temperature T of LwF, > 0")

    def _check(self) -> None:
        require_finite("lwf_alpha", self.lwf_alpha)
        require_finite("lwf_temperature", self.lwf_temperature, positive=True)


# The previous model in the plugin, outside what a checkpoint saves: restarts.
@register_method("lwf", settings=LwFSettings(), resumable=False, rank=6)
def lwf(ctx: MethodContext) -> Any:
    """Learning without Forgetting: Avalanche's LwFPlugin on fine-tuning"""
    from avalanche.training.plugins import LwFPlugin

    settings = ctx.settings
    if ctx.run.scenario == "task":
        alpha: float | list[float] = settings.lwf_alpha
    else:
        alpha = [settings.lwf_alpha * e for e in range(ctx.stream.n_experiences)]
    plugin = LwFPlugin(alpha=alpha, temperature=settings.lwf_temperature)
    return ctx.tensor_strategy(plugins=[plugin])
