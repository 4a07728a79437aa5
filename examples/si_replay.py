"""Avalanche's Synaptic Intelligence plus our generative replay, as a method of the suite.

    python benchmarks/run.py --import examples/si_replay.py --strategy si_replay dgr
    python benchmarks/make_tables.py --import examples/si_replay.py --runs runs
"""

from avalanche.training.plugins import SynapticIntelligencePlugin

import cl_binvae


# SI keeps its importance weights in the plugin, outside what a checkpoint saves, so an
# interrupted run starts over (resumable=False). generator=True: our replay plugin is inside,
# so the run takes --prior and gets generator diagnostics and sample grids.
@cl_binvae.register_method("si_replay", generator=True, resumable=False)
def si_replay(ctx):
    """Synaptic Intelligence (lambda 1) with our generative replay"""
    return ctx.generative_replay(plugins=[SynapticIntelligencePlugin(si_lambda=1.0)])
