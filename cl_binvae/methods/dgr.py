"""Deep generative replay with a plain VAE: our replay plugin pinned at r = 0."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cl_binvae.suite.registry import register_method
from cl_binvae.suite.replay_settings import ReplaySettings

if TYPE_CHECKING:
    from cl_binvae.suite.context import MethodContext


@register_method("dgr", resumable=True, settings=ReplaySettings(), pinned=("r",), rank=30)
def dgr(ctx: MethodContext) -> Any:
    """our replay plugin with a plain VAE (r = 0)"""
    return ctx.generative_replay()
