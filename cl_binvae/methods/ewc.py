"""Online EWC: Avalanche's ``EWCPlugin`` in online mode on fine-tuning.

Elastic weight consolidation (Kirkpatrick et al. 2017) in its online form (Schwarz et al.
2018; van de Ven et al., "Three scenarios for continual learning", whose ``compare_all.py``
runs it as "Online EWC"): one quadratic penalty ``lambda * sum_i F_i (theta_i - theta*_i)^2``
around the weights after the last experience, where ``F = F_t + gamma F`` accumulates each
experience's diagonal Fisher with decay ``gamma`` (``--ewc-decay``). Avalanche computes
``F_t`` after each experience with one extra pass over the experience, in minibatches of the
protocol's batch size.

Default strength, converted from the anchor (van de Ven et al.'s preprint ``param_values.py``,
split-MNIST class-IL: ``o_lambda = 1e9``, ``gamma = 0.8``). Their penalty is
``lambda/2 * gamma * F_cum (theta - theta*)^2``, F the mean over single samples of the squared
gradient under the predicted label; Avalanche's is ``lambda * F_cum (...)^2``, no 1/2 and no
extra gamma, F the mean over minibatches of 128 of the squared *minibatch-mean* gradient under
the true labels. The two Fisher estimates agree within a factor 1.3 here: on split-MNIST's
first experience after the paper protocol, theirs sums to 1.3x Avalanche's (0.8-1.9x per
layer; ``results/pilots/baselines/fisher_scale.py``), because a classifier trained to 100%
keeps pushing every sample's margin the same way, so averaging a minibatch's gradients before
squaring loses little. Hence ``lambda_avalanche = lambda_vdV * gamma / 2 = 4e8``. Their other
split-MNIST values convert to 4e7 (task-IL, gamma 0.8) and 3.5e7 (domain-IL, gamma 0.7);
permuted-MNIST's to 200 (task), 450 (domain) and 2.5 (class, gamma 1).
results/pilots/baselines/README.md sweeps around the default.

The importances live in the plugin, outside what a checkpoint saves (Avalanche plugins have
no ``state_dict``): an interrupted run starts over (``resumable=False``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cl_binvae.suite.registry import register_method
from cl_binvae.suite.settings import MethodSettings, flag, require_finite

if TYPE_CHECKING:
    from cl_binvae.suite.context import MethodContext

#: The defaults, shared with ewc_replay (one flag, one meaning): see the module doc.
EWC_LAMBDA = 4e8
EWC_DECAY = 0.8
LAMBDA_HELP = ("strength lambda of online EWC's penalty lambda * sum F (theta - theta*)^2 "
               "(Avalanche's scale: van de Ven's o_lambda * gamma / 2)")
DECAY_HELP = "decay gamma of online EWC's accumulated Fisher, F = F_new + gamma F, in [0, 1]"


def check_ewc(ewc_lambda: float, ewc_decay: float) -> None:
    """``ValueError`` in one line for an EWC strength or decay that makes no run."""
    require_finite("ewc_lambda", ewc_lambda)
    if not 0 <= ewc_decay <= 1:
        raise ValueError(f"--ewc-decay must be in [0, 1], got {ewc_decay:g}")


def ewc_plugin(ewc_lambda: float, ewc_decay: float) -> Any:
    """Avalanche's EWC plugin in online mode at these settings."""
    from avalanche.training.plugins import EWCPlugin

    return EWCPlugin(ewc_lambda=ewc_lambda, mode="online", decay_factor=ewc_decay)


@dataclass(frozen=True)
class EWCSettings(MethodSettings):
    """Online EWC's strength and Fisher decay."""

    ewc_lambda: float = flag(EWC_LAMBDA, LAMBDA_HELP)
    ewc_decay: float = flag(EWC_DECAY, DECAY_HELP)

    def _check(self) -> None:
        check_ewc(self.ewc_lambda, self.ewc_decay)


# Importances in the plugin, outside what a checkpoint saves: restarts.
@register_method("ewc", settings=EWCSettings(), resumable=False, rank=2)
def ewc(ctx: MethodContext) -> Any:
    """online EWC: Avalanche's EWCPlugin (mode online) on fine-tuning"""
    settings = ctx.settings
    return ctx.tensor_strategy(plugins=[ewc_plugin(settings.ewc_lambda, settings.ewc_decay)])
