"""Generative replay with the binarized VAE: our replay plugin at radius --r."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cl_binvae.suite.registry import register_method
from cl_binvae.suite.replay_settings import ReplaySettings

if TYPE_CHECKING:
    from cl_binvae.suite.context import MethodContext


# r = 1 under the fitted prior: the best generative replay of the split-MNIST and
# permuted-MNIST tables (results/).
@register_method("binvae_gr", resumable=True, settings=ReplaySettings(r=1.0), r_baseline="dgr",
                 rank=40)
def binvae_gr(ctx: MethodContext) -> Any:
    """our replay plugin with the binarized VAE of radius --r"""
    return ctx.generative_replay()
