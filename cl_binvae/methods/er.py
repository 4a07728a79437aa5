"""Experience replay: Avalanche's ReplayPlugin with the protocol's stored samples per class."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cl_binvae.suite.registry import register_method

if TYPE_CHECKING:
    from cl_binvae.suite.context import MethodContext


# Avalanche's replay buffers live in the plugin, outside what a checkpoint saves: restarts.
@register_method("er", rank=10)
def er(ctx: MethodContext) -> Any:
    """Avalanche's ReplayPlugin, 100 stored samples per class"""
    from avalanche.training.plugins import ReplayPlugin
    from avalanche.training.storage_policy import ClassBalancedBuffer, ExperienceBalancedBuffer

    stream = ctx.stream
    size = ctx.memory_budget()
    # Balanced over classes in class-IL; in task- and domain-IL, where labels repeat across
    # experiences, over experiences of equal class counts.
    if ctx.run.scenario == "class":
        buffer = ClassBalancedBuffer(size, adaptive_size=False,
                                     total_num_classes=stream.n_outputs)
    else:
        buffer = ExperienceBalancedBuffer(size, adaptive_size=False,
                                          num_experiences=stream.n_experiences)
    replay = ReplayPlugin(mem_size=size, storage_policy=buffer)
    # Avalanche's replay loader counts epochs: the budget turns iterations into epochs.
    return ctx.tensor_strategy(iterations=None, plugins=[replay, ctx.epoch_budget()])
