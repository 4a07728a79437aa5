"""The built-in methods, one file each; importing this package registers them.

A method's file holds its registration, its builder, and what belongs to it alone (its
settings and their flags, its own protocol). Adding a method is adding one file: a built-in
is then imported here; a user's file is given to ``benchmarks/run.py --import``.
"""

# In the order of --help and of the registry: fine-tuning, regularization and rehearsal
# baselines, generative replay (Avalanche's, then ours), the upper bound, then the generative
# classifier.
from cl_binvae.methods import naive  # noqa: I001 - registration order, not alphabetical
from cl_binvae.methods import ewc
from cl_binvae.methods import si
from cl_binvae.methods import lwf
from cl_binvae.methods import er
from cl_binvae.methods import agem
from cl_binvae.methods import icarl
from cl_binvae.methods import der
from cl_binvae.methods import avalanche_gr
from cl_binvae.methods import dgr
from cl_binvae.methods import binvae_gr
from cl_binvae.methods import ewc_replay
from cl_binvae.methods import joint
from cl_binvae.methods import gen_classifier

__all__ = ["agem", "avalanche_gr", "binvae_gr", "der", "dgr", "er", "ewc", "ewc_replay",
           "gen_classifier", "icarl", "joint", "lwf", "naive", "si"]
