"""Joint training: all experiences as one, the same total iterations, the upper bound."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cl_binvae.suite.registry import register_method

if TYPE_CHECKING:
    from cl_binvae.suite.context import MethodContext


@register_method("joint", resumable=True, joint=True, rank=100)
def joint(ctx: MethodContext) -> Any:
    """all experiences as one, the same total iterations: the upper bound"""
    return ctx.tensor_strategy(iterations=ctx.protocol.iterations * ctx.stream.n_experiences)
