"""The model's configuration: the binarized VAE family and its latent priors.

Plain Python, no torch: a sweep's settings are checked with these before torch and Avalanche
are imported. ``cl_binvae.model.vae`` builds a generator from a ``VAEConfig``;
``cl_binvae.model.priors`` builds its prior from a ``PriorConfig``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

VARIANTS = ("vae", "beta", "capacity")
LIKELIHOODS = ("bernoulli", "gaussian")
ARCHITECTURES = ("mlp", "conv")
PRIOR_NAMES = ("mixture", "standard", "fitted", "codes")
#: The prior replay samples from unless told otherwise (see ``PriorConfig``).
DEFAULT_PRIOR = "fitted"
#: Priors whose latents depend on the class (their KL needs the class of every image).
CONDITIONAL_PRIORS = ("codes",)
#: Latents a fitted prior is fitted to after each experience, and the most components it takes
#: (ten latents per component).
FIT_SAMPLES = 10_000
MAX_COMPONENTS = FIT_SAMPLES // 10
#: Components of a fitted prior unless a run says otherwise.
DEFAULT_COMPONENTS = 20
#: Largest binarization radius accepted (see ``check_radius``).
MAX_RADIUS = 1000.0


def check_radius(r: float) -> float:
    """Return ``r`` as a float, or raise ``ValueError`` unless 0 <= r <= ``MAX_RADIUS``."""
    r = float(r)
    if not math.isfinite(r) or r < 0:
        raise ValueError(f"the binarization radius r must be finite and >= 0, got r={r}")
    if r > MAX_RADIUS:
        raise ValueError(f"the binarization radius r must be <= {MAX_RADIUS:g}, got r={r:g}: "
                         "the modes +-r sit r prior standard deviations from 0, and past that "
                         "the KL loses float32 precision")
    return r



@dataclass(frozen=True)
class PriorConfig:
    """Which prior a generator samples from. ``components``: K of ``fitted``; ``seed``: draws
    the codes of ``codes`` and seeds the mixture fit of ``fitted``.

    The default is ``fitted``, the prior under which replay worked best in every table of
    ``results/`` (split-MNIST and permuted-MNIST, r = 0 and r > 0); ``mixture``, the fair-sign
    0.5 N(r, 1) + 0.5 N(-r, 1), is the paper-literal choice. A fitted prior samples only after
    its first fit (the replay plugin fits it after each experience; ``BaseVAE.fit_prior``)."""

    name: str = DEFAULT_PRIOR
    components: int = DEFAULT_COMPONENTS
    seed: int = 0

    def __post_init__(self) -> None:
        if self.name not in PRIOR_NAMES:
            raise ValueError(f"unknown prior {self.name!r}; choose one of {PRIOR_NAMES}")
        if isinstance(self.components, bool) or not isinstance(self.components, int) \
                or not 1 <= self.components <= MAX_COMPONENTS:
            raise ValueError(f"the fitted prior needs K >= 1 components (at most "
                             f"{MAX_COMPONENTS}: it is fitted to {FIT_SAMPLES} latents), got "
                             f"{self.components}")

    @property
    def conditional(self) -> bool:
        """Whether this prior's latents depend on the class (``CONDITIONAL_PRIORS``)."""
        return self.name in CONDITIONAL_PRIORS


@dataclass(frozen=True)
class VAEConfig:
    """Everything that defines a generator except the input shape, which comes from the data."""

    r: float = 0.0
    variant: str = "vae"
    beta: float = 1.0
    capacity_max: float = 25.0
    capacity_steps: int = 10_000
    likelihood: str = "bernoulli"
    arch: str = "mlp"
    z_dim: int = 100
    hidden: tuple[int, ...] = (400, 400)
    channels: tuple[int, ...] = (32, 64, 128)
    prior: PriorConfig = PriorConfig()

    def __post_init__(self) -> None:
        check_radius(self.r)
        if self.variant not in VARIANTS:
            raise ValueError(f"unknown VAE variant {self.variant!r}; choose one of {VARIANTS}")
        if self.likelihood not in LIKELIHOODS:
            raise ValueError(f"unknown likelihood {self.likelihood!r}; choose one of {LIKELIHOODS}")
        if self.arch not in ARCHITECTURES:
            raise ValueError(f"unknown architecture {self.arch!r}; choose one of {ARCHITECTURES}")
        if not (math.isfinite(self.beta) and self.beta > 0):
            raise ValueError(f"beta must be finite and > 0, got beta={self.beta}")
        if self.variant == "vae" and self.beta != 1.0:
            raise ValueError(f"variant 'vae' has beta = 1 (got beta={self.beta}); use 'beta'")
        if not (math.isfinite(self.capacity_max) and self.capacity_max >= 0):
            raise ValueError(f"capacity_max must be finite and >= 0, got {self.capacity_max}")
        if self.capacity_steps <= 0:
            raise ValueError(f"capacity_steps must be > 0, got {self.capacity_steps}")
        if self.z_dim <= 0 or any(h <= 0 for h in self.hidden + self.channels):
            raise ValueError("z_dim, hidden and channels must be positive")
