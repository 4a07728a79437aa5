"""cl_binvae: a continual-learning suite for generative replay with binarized-KL VAEs.

``import cl_binvae`` is light (no torch): it gives the method registry, so a user's file can
``@cl_binvae.register_method("mine")`` a builder that ``benchmarks/run.py --import`` runs.
"""

from cl_binvae.methods import METHODS, Method, get_method, register_method

__all__ = ["METHODS", "Method", "get_method", "register_method"]
