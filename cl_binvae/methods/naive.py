"""Fine-tuning: the solver learns each experience in turn, the lower bound."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cl_binvae.suite.registry import register_method

if TYPE_CHECKING:
    from cl_binvae.suite.context import MethodContext


@register_method("naive", resumable=True, rank=0)
def naive(ctx: MethodContext) -> Any:
    """fine-tuning, the lower bound"""
    return ctx.tensor_strategy()
