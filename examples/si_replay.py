"""Avalanche's Synaptic Intelligence plus our generative replay, as a method of the suite.

    python benchmarks/run.py --import examples/si_replay.py --strategy si_replay dgr
    python benchmarks/run.py --import examples/si_replay.py --strategy si_replay --si-lambda 1 4
    python benchmarks/make_tables.py --import examples/si_replay.py --runs runs
"""

from dataclasses import dataclass

import cl_binvae
from cl_binvae.methods.si import snapshot_plugin


@dataclass(frozen=True)
class SIReplaySettings(cl_binvae.ReplaySettings):
    """Our replay's settings (--r, --prior, ...) and SI's own, each a flag of the driver."""

    si_lambda: float = cl_binvae.flag(1.0, "strength of Synaptic Intelligence's penalty")

    def __post_init__(self):
        super().__post_init__()
        if not self.si_lambda > 0:
            raise ValueError(f"--si-lambda must be > 0, got {self.si_lambda}")


# SI keeps its importance weights in the plugin, outside what a checkpoint saves, so an
# interrupted run starts over (resumable=False). ReplaySettings: our replay plugin is inside,
# so the run gets generator diagnostics and sample grids. snapshot_plugin() is Avalanche's
# SynapticIntelligencePlugin as the suite's si method uses it (on a CPU, Avalanche 0.6's own
# snapshots alias the weights and its penalty is always 0; see cl_binvae/methods/si.py).
@cl_binvae.register_method("si_replay", settings=SIReplaySettings(), resumable=False)
def si_replay(ctx):
    """Synaptic Intelligence with our generative replay"""
    si = snapshot_plugin()(si_lambda=ctx.settings.si_lambda)
    return ctx.generative_replay(plugins=[si])
