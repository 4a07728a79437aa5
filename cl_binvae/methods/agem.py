"""A-GEM: Avalanche's ``AGEMPlugin`` on fine-tuning, with ER's memory budget.

Averaged gradient episodic memory (Chaudhry et al. 2019): before each step, the gradient of a
sample drawn from the stored examples is computed; where the current gradient points against
it, the current gradient is projected onto the plane orthogonal to it. Avalanche stores a
uniform random draw of ``patterns_per_experience`` samples of each experience (not balanced
over its classes) and draws ``sample_size // experiences stored`` from each for the
reference gradient.

Memory: ER's budget (``ctx.memory_budget()``: the protocol's 100 samples for every class of
the stream), spread evenly over the experiences, so ``patterns_per_experience`` is 100 x the
classes of an experience (split-MNIST: 200, 1000 in all, as ER's buffer). The reference sample
is the protocol's batch (van de Ven et al.: the replay batch is the batch size, 128) unless
``--agem-sample-size`` says otherwise.

The stored samples live in the plugin, outside what a checkpoint saves: an interrupted run
starts over (``resumable=False``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cl_binvae.suite.registry import register_method
from cl_binvae.suite.settings import MethodSettings, flag

if TYPE_CHECKING:
    from cl_binvae.suite.context import MethodContext


@dataclass(frozen=True)
class AGEMSettings(MethodSettings):
    """The size of A-GEM's reference sample (None: the protocol's batch size)."""

    agem_sample_size: int | None = flag(None, "stored samples drawn for A-GEM's reference "
                                        "gradient at each step, >= 1 (None: the batch size)")

    def _check(self) -> None:
        if self.agem_sample_size is not None and self.agem_sample_size < 1:
            raise ValueError(f"--agem-sample-size must be >= 1, got {self.agem_sample_size}")

    def named_under(self, protocol: Any) -> AGEMSettings:
        """These settings as a run under ``protocol`` names them: the batch size as unset (one
        configuration, one run id)."""
        if self.agem_sample_size == protocol.batch_size:
            return dataclasses.replace(self, agem_sample_size=None)
        return self


def patterns_per_experience(ctx: MethodContext) -> int:
    """ER's budget split evenly over the stream's experiences."""
    budget, n = ctx.memory_budget(), ctx.stream.n_experiences
    if budget % n:
        raise ValueError(f"A-GEM stores as many samples of every experience, but ER's budget "
                         f"of {budget} does not split evenly over {n} experiences")
    return budget // n


# Stored samples in the plugin, outside what a checkpoint saves: restarts.
@register_method("agem", settings=AGEMSettings(), resumable=False, rank=12)
def agem(ctx: MethodContext) -> Any:
    """A-GEM: Avalanche's AGEMPlugin on fine-tuning, 100 stored samples per class"""
    from avalanche.training.plugins import AGEMPlugin

    sample_size = ctx.settings.agem_sample_size or ctx.protocol.batch_size
    if sample_size < ctx.stream.n_experiences - 1:  # it draws sample_size // stored from each
        raise ValueError(f"--agem-sample-size {sample_size} draws nothing from some of the "
                         f"{ctx.stream.n_experiences - 1} experiences it stores")
    plugin = AGEMPlugin(patterns_per_experience=patterns_per_experience(ctx),
                        sample_size=sample_size)
    return ctx.tensor_strategy(plugins=[plugin])
