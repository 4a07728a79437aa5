"""Avalanche's own GenerativeReplay, as its users run it: the baseline our replay replaces."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cl_binvae.suite.registry import register_method

if TYPE_CHECKING:
    from cl_binvae.suite.context import MethodContext


def _samples(strategy: Any, n: int) -> Any:
    """``n`` images from Avalanche's generator, for the sample grids."""
    return strategy.generator_strategy.model.generate(n)


# Not task-aware (its generator knows no task labels); its state does not checkpoint.
@register_method("avalanche_gr", scenarios=("class", "domain"), samples=_samples, rank=20)
def avalanche_gr(ctx: MethodContext) -> Any:
    """Avalanche's GenerativeReplay with its default generator (MLP VAE, 2-d latent)"""
    import torch
    from avalanche.models import MlpVAE, VAE_loss
    from avalanche.training import GenerativeReplay, VAETraining
    from avalanche.training.plugins import EvaluationPlugin, GenerativeReplayPlugin
    from torch import nn

    # Its defaults (Adam lr 0.01, weight decay 1e-4), built here only to fit the stream's input
    # shape and to keep the generator's evaluator silent.
    model = ctx.solver()
    optimizer = ctx.optimizer(model)
    vae = MlpVAE(ctx.stream.input_shape, nhid=2, device=ctx.device)
    kwargs = ctx.template_kwargs(model, optimizer)
    generator_strategy = VAETraining(
        model=vae, optimizer=torch.optim.Adam(vae.parameters(), lr=0.01, weight_decay=1e-4),
        criterion=VAE_loss, train_mb_size=kwargs["train_mb_size"],
        eval_mb_size=kwargs["eval_mb_size"], device=ctx.device,
        plugins=[GenerativeReplayPlugin(), ctx.epoch_budget()],
        evaluator=EvaluationPlugin(loggers=[]))
    return GenerativeReplay(criterion=nn.CrossEntropyLoss(),
                            plugins=[*ctx.plugins, ctx.epoch_budget()],
                            generator_strategy=generator_strategy, **kwargs)
