"""cl_binvae: a continual-learning suite for generative replay with binarized-KL VAEs.

The package's wings, each importing only those before it:

- ``cl_binvae.model``: the binarized KL, the latent priors, the VAE family, diagnostics;
- ``cl_binvae.training``: training from tensors (minibatches, a tensor-fed Avalanche template);
- ``cl_binvae.replay``: generative replay for Avalanche (the plugin, its strategy);
- ``cl_binvae.classifier``: the generative classifier (one VAE per class, by likelihood);
- ``cl_binvae.suite``: the benchmark machinery (runs, presets, streams, the method registry);
- ``cl_binvae.methods``: the built-in methods, one file each;
- ``cl_binvae.report``: tables and figures from run directories.

``import cl_binvae`` is light (no torch): it registers the built-in methods, so a user's file
can ``@cl_binvae.register_method("mine")`` a builder that ``benchmarks/run.py --import``
runs. The names below are the public API; those that need torch load on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from cl_binvae import methods as _builtins  # noqa: F401 - registers the built-in methods
from cl_binvae.classifier.config import ClassifierConfig
from cl_binvae.model.config import PriorConfig, VAEConfig
from cl_binvae.replay.config import ReplayConfig
from cl_binvae.suite.config import SolverConfig, StreamConfig
from cl_binvae.suite.registry import METHODS, Method, get_method, register_method
from cl_binvae.suite.replay_settings import GeneratorSettings, ReplaySettings
from cl_binvae.suite.run_config import RunConfig
from cl_binvae.suite.settings import MethodSettings, flag

#: Public names that import torch, and the module each comes from (loaded on first use).
_HEAVY = {
    "binarized_kl": "cl_binvae.model.regularizer",
    "build_prior": "cl_binvae.model.priors",
    "BaseVAE": "cl_binvae.model.vae",
    "build_vae": "cl_binvae.model.vae",
    "BinVAEReplayPlugin": "cl_binvae.replay.plugin",
    "BinVAEGenerativeReplay": "cl_binvae.replay.strategy",
    "TensorStrategy": "cl_binvae.training.tensor_strategy",
    "MethodContext": "cl_binvae.suite.context",
    "GenerativeClassifier": "cl_binvae.classifier.model",
    "GenerativeClassifierStrategy": "cl_binvae.classifier.strategy",
}

__all__ = ["METHODS", "BaseVAE", "BinVAEGenerativeReplay", "BinVAEReplayPlugin",
           "ClassifierConfig", "GenerativeClassifier", "GenerativeClassifierStrategy",
           "GeneratorSettings", "Method", "MethodContext", "MethodSettings", "PriorConfig",
           "ReplayConfig", "ReplaySettings", "RunConfig", "SolverConfig", "StreamConfig",
           "TensorStrategy", "VAEConfig", "binarized_kl", "build_prior", "build_vae", "flag",
           "get_method", "register_method"]


def __getattr__(name: str) -> Any:
    if name not in _HEAVY:
        raise AttributeError(f"module 'cl_binvae' has no attribute {name!r}")
    value = getattr(importlib.import_module(_HEAVY[name]), name)
    globals()[name] = value  # once loaded, an ordinary attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_HEAVY))
