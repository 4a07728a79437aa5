"""DER++: Avalanche's ``DER`` strategy with ER's memory budget.

Dark experience replay (Buzzega et al. 2020): each step trains on the current minibatch plus a
minibatch of stored samples, whose outputs are pulled towards the logits stored with them
(``alpha * MSE``, DER) and whose labels are learnt again (``beta * CE``; beta > 0 makes it
DER++). Avalanche draws one stored minibatch for both terms (the authors draw two) and stores
the logits after training on the experience (the authors as each sample streams by).

Memory: ER's budget (``ctx.memory_budget()``: the protocol's 100 samples for every class of the
stream). Avalanche's constructor builds its buffer with ``adaptive_size=True`` (the whole
budget spread over the classes seen so far); it is replaced right after construction by the
same class with ``adaptive_size=False`` over the stream's classes, so that, as ER's, it holds
100 samples of every class seen from the first experience on. The stored minibatch is the
protocol's batch size (as ER's). DER counts epochs, so ``ctx.epoch_budget()`` turns the
protocol's iterations into epochs of the experience (as for ER).

Defaults alpha = 1, beta = 0.5: Mammoth's (the authors' code, ``utils/best_args.py``) for
DER++ on sequential MNIST with the buffer nearest ours (500 samples; ours holds 1,000);
their SGD at lr 0.03 on minibatches of 10 is not this protocol, so
results/pilots/baselines/README.md sweeps both.

Class- and domain-IL only: the stored logits need one head of fixed size, and Avalanche
computes them without task labels (multi-head task-IL fails, Avalanche issue #1657). In
domain-IL the buffer is balanced over the labels (which recur across experiences), where ER's
is balanced over experiences; the budget is the same. Buffer and logits live in the strategy,
outside what a checkpoint saves: an interrupted run starts over (``resumable=False``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cl_binvae.suite.registry import register_method
from cl_binvae.suite.settings import MethodSettings, flag, require_finite

if TYPE_CHECKING:
    from cl_binvae.suite.context import MethodContext


@dataclass(frozen=True)
class DERSettings(MethodSettings):
    """The weights of DER++'s two replay terms."""

    der_alpha: float = flag(1.0, "weight of DER's logit matching (MSE to the stored logits), "
                            ">= 0")
    der_beta: float = flag(0.5, "weight of DER++'s cross-entropy on the stored samples, >= 0 "
                           "(0: plain DER)")

    def _check(self) -> None:
        require_finite("der_alpha", self.der_alpha)
        require_finite("der_beta", self.der_beta)


# Buffer and stored logits in the strategy, outside what a checkpoint saves: restarts.
@register_method("der", scenarios=("class", "domain"), settings=DERSettings(),
                 resumable=False, rank=16)
def der(ctx: MethodContext) -> Any:
    """DER++: Avalanche's DER strategy, 100 stored samples per class (class- and domain-IL)"""
    from avalanche.training import DER
    from avalanche.training.supervised.der import ClassBalancedBufferWithLogits
    from torch import nn

    size = ctx.memory_budget()
    model = ctx.solver()
    strategy = DER(criterion=nn.CrossEntropyLoss(), mem_size=size, alpha=ctx.settings.der_alpha,
                   beta=ctx.settings.der_beta, plugins=[*ctx.plugins, ctx.epoch_budget()],
                   **ctx.template_kwargs(model, ctx.optimizer(model)))
    strategy.storage_policy = ClassBalancedBufferWithLogits(
        size, adaptive_size=False, total_num_classes=ctx.stream.n_outputs)
    return strategy
