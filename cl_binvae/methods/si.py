"""Synaptic Intelligence: Avalanche's ``SynapticIntelligencePlugin`` on fine-tuning.

SI (Zenke et al. 2017) weighs each parameter by its path integral over an experience,
``omega += W / (delta^2 + eps)`` with ``W = -sum_steps g * delta_theta``, and penalizes
``si_lambda / 2 * sum omega (theta - theta*)^2`` (Avalanche's form). van de Ven et al. ("Three
scenarios for continual learning", preprint ``param_values.py``) penalize
``c * sum omega (...)^2`` with eps = 0.1, so ``si_lambda = 2 c``; their split-MNIST class-IL
c = 0.5 gives the default ``--si-lambda 1`` and ``--si-eps 0.1`` (Avalanche's own default eps
is 1e-7). Their other values convert to 100 (split task-IL, c = 50), 1000 (split domain-IL,
c = 500), 10 (permuted task- and domain-IL, c = 5) and 0.2 (permuted class-IL, c = 0.1).
One departure cannot be undone from outside: Avalanche caps every omega at 0.001
(``clip_to`` is hard-coded in ``after_training_exp``), which van de Ven do not; it binds only
where omega is large. results/pilots/baselines/README.md sweeps si_lambda.

On a CPU, Avalanche 0.6's plugin does nothing: it snapshots the weights with
``param.detach().cpu().flatten()``, which on a CPU is a view of the parameter, not a copy, so
the optimizer's step moves the "old" weights and the anchor along with the parameters, every
path integral is 0 and so is the penalty (on a GPU ``.cpu()`` copies, and it works). The
plugin used here is Avalanche's with one change, :func:`snapshot_plugin`: after Avalanche's
own hooks take the two snapshots that must outlive a step (the anchor at the start of an
experience, the weights before each step), it replaces them by copies. The algorithm is
Avalanche's; only the aliasing is undone.

The importances live in the plugin, outside what a checkpoint saves: an interrupted run starts
over (``resumable=False``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cl_binvae.suite.registry import register_method
from cl_binvae.suite.settings import MethodSettings, flag, require_finite

if TYPE_CHECKING:
    from cl_binvae.suite.context import MethodContext


@dataclass(frozen=True)
class SISettings(MethodSettings):
    """SI's strength and damping."""

    si_lambda: float = flag(1.0, "strength of Synaptic Intelligence's penalty (Avalanche's "
                            "si_lambda: 2 x van de Ven's c)")
    si_eps: float = flag(0.1, "SI's damping eps in omega = W / (delta^2 + eps), > 0")

    def _check(self) -> None:
        require_finite("si_lambda", self.si_lambda)
        require_finite("si_eps", self.si_eps, positive=True)


@functools.cache
def snapshot_plugin() -> type:
    """Avalanche's ``SynapticIntelligencePlugin`` whose weight snapshots are copies on a CPU
    too (see the module doc); built on first use, so that importing this file needs no
    torch."""
    from avalanche.training.plugins import SynapticIntelligencePlugin

    def own(snapshots: dict) -> None:
        for snapshot in snapshots.values():
            snapshot.data = snapshot.data.clone()

    class SnapshotSynapticIntelligencePlugin(SynapticIntelligencePlugin):
        """Avalanche's SI plugin; the anchor and the pre-step weights it snapshots are copied
        once its own hooks have taken them."""

        def before_training_exp(self, strategy: Any, **kwargs: Any) -> None:
            super().before_training_exp(strategy, **kwargs)
            own(self.ewc_data[0])  # the anchor theta* of this experience's penalty

        def before_training_iteration(self, strategy: Any, **kwargs: Any) -> None:
            super().before_training_iteration(strategy, **kwargs)
            own(self.syn_data["old_theta"])  # the weights before this step

    return SnapshotSynapticIntelligencePlugin


# Importances in the plugin, outside what a checkpoint saves: restarts.
@register_method("si", settings=SISettings(), resumable=False, rank=4)
def si(ctx: MethodContext) -> Any:
    """Synaptic Intelligence: Avalanche's SynapticIntelligencePlugin on fine-tuning"""
    settings = ctx.settings
    plugin = snapshot_plugin()(si_lambda=settings.si_lambda, eps=settings.si_eps)
    return ctx.tensor_strategy(plugins=[plugin])
