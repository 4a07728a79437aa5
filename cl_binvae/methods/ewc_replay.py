"""Online EWC plus our binarized generative replay, in one strategy.

van de Ven et al. (brain-inspired replay, Nature Communications 2020) report that replay and
a regularizer together (BI-R + SI) beat either alone; this is that combination with online EWC:
our replay plugin with the binarized VAE (``--r``, ``--prior`` and the other replay flags,
defaults as binvae_gr's: r = 1 under the fitted prior) and Avalanche's ``EWCPlugin`` in online
mode (``--ewc-lambda``, ``--ewc-decay``, defaults as ewc's; see cl_binvae/methods/ewc.py). The
Fisher is computed on the experience's own data after it is learnt, as in ewc; replay does not
enter it.

EWC's importances live in its plugin, outside what a checkpoint saves (our replay plugin's
state would resume, EWC's would not): an interrupted run starts over (``resumable=False``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cl_binvae.methods.ewc import (
    DECAY_HELP,
    EWC_DECAY,
    EWC_LAMBDA,
    LAMBDA_HELP,
    check_ewc,
    ewc_plugin,
)
from cl_binvae.suite.registry import register_method
from cl_binvae.suite.replay_settings import ReplaySettings
from cl_binvae.suite.settings import as_floats, flag

if TYPE_CHECKING:
    from cl_binvae.suite.context import MethodContext


@dataclass(frozen=True)
class EWCReplaySettings(ReplaySettings):
    """Our replay's settings (--r, --prior, ...) and online EWC's, each a flag of the driver."""

    ewc_lambda: float = flag(EWC_LAMBDA, LAMBDA_HELP)
    ewc_decay: float = flag(EWC_DECAY, DECAY_HELP)

    def _check(self) -> None:
        super()._check()
        as_floats(self)  # an int lambda records (and hashes) as its float
        check_ewc(self.ewc_lambda, self.ewc_decay)


# EWC's importances are outside what a checkpoint saves: restarts. r = 1 under the fitted
# prior, binvae_gr's defaults.
@register_method("ewc_replay", settings=EWCReplaySettings(r=1.0), resumable=False, rank=45,
                 extends="binvae_gr")
def ewc_replay(ctx: MethodContext) -> Any:
    """online EWC with our binarized replay (r = 1, fitted prior)"""
    settings = ctx.settings
    return ctx.generative_replay(plugins=[ewc_plugin(settings.ewc_lambda, settings.ewc_decay)])
