"""Configuration dataclasses: streams, solvers, generators, priors and replay.

Plain Python, no torch: the driver parses and checks a whole sweep with these before it pays
for importing torch and Avalanche. Each heavy module re-exports its own config
(``cl_binvae.vae.VAEConfig`` is ``cl_binvae.configs.VAEConfig``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

SCENARIOS = ("class", "task", "domain")
STREAMS = ("split_mnist", "permuted_mnist", "split_cifar10")
_SOURCES = {"split_mnist": "mnist", "permuted_mnist": "mnist", "split_cifar10": "cifar10"}
SOLVER_ARCHITECTURES = ("mlp", "conv")
VARIANTS = ("vae", "beta", "capacity")
LIKELIHOODS = ("bernoulli", "gaussian")
ARCHITECTURES = ("mlp", "conv")
PRIOR_NAMES = ("mixture", "standard", "fitted", "codes")
REPLAY_LABELS = ("solver", "prior")
#: Avalanche loggers the driver can attach, and the package each needs (None: always there).
LOGGERS = {"text": None, "csv": None, "tensorboard": "tensorboard", "wandb": "wandb"}
#: Latents a fitted prior is fitted to after each experience, and the most components it takes
#: (ten latents per component).
FIT_SAMPLES = 10_000
MAX_COMPONENTS = FIT_SAMPLES // 10
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


def source_dataset(stream: str) -> str:
    """The dataset a stream is cut from: 'mnist', 'cifar10' or the user's .npz path."""
    return _SOURCES.get(stream, stream)


@dataclass(frozen=True)
class StreamConfig:
    """Which stream to build; ``name`` is a built-in stream or a path to a user ``.npz``.

    ``n_experiences`` defaults to 5 for split streams and 10 for permuted-MNIST.
    ``class_order_seed``: None keeps the classes in label order (the reference protocol);
    an integer draws a seeded random order. ``seed`` seeds the permutations.
    """

    name: str = "split_mnist"
    scenario: str = "class"
    n_experiences: int | None = None
    seed: int = 0
    class_order_seed: int | None = None

    def __post_init__(self) -> None:
        if self.scenario not in SCENARIOS:
            raise ValueError(f"unknown scenario {self.scenario!r}; choose one of {SCENARIOS}")
        if self.name not in STREAMS and not self.name.endswith(".npz"):
            raise ValueError(f"unknown stream {self.name!r}; choose one of {STREAMS} or give "
                             "the path to a .npz file")
        if self.n_experiences is not None and self.n_experiences < 1:
            raise ValueError(f"n_experiences must be >= 1, got {self.n_experiences}")

    @property
    def is_permuted(self) -> bool:
        return self.name == "permuted_mnist"

    @property
    def experiences(self) -> int:
        """The number of experiences: ``n_experiences``, or the stream's default."""
        return self.n_experiences or (10 if self.is_permuted else 5)


@dataclass(frozen=True)
class SolverConfig:
    """``mlp``: ``hidden`` fully connected ReLU layers (the reference protocol's 2x400).
    ``conv``: stride-2 conv layers of ``channels`` with batch norm, then one hidden layer.
    ``fc_batch_norm``: batch norm before the ReLU of each hidden fully connected layer too."""

    arch: str = "mlp"
    hidden: tuple[int, ...] = (400, 400)
    channels: tuple[int, ...] = (32, 64, 128)
    fc_batch_norm: bool = False

    def __post_init__(self) -> None:
        if self.arch not in SOLVER_ARCHITECTURES:
            raise ValueError(f"unknown solver {self.arch!r}; choose one of {SOLVER_ARCHITECTURES}")


@dataclass(frozen=True)
class PriorConfig:
    """Which prior a generator samples from. ``components``: K of ``fitted``; ``seed``: draws
    the codes of ``codes`` and seeds the mixture fit of ``fitted``."""

    name: str = "mixture"
    components: int = 20
    seed: int = 0

    def __post_init__(self) -> None:
        if self.name not in PRIOR_NAMES:
            raise ValueError(f"unknown prior {self.name!r}; choose one of {PRIOR_NAMES}")
        if isinstance(self.components, bool) or not isinstance(self.components, int) \
                or not 1 <= self.components <= MAX_COMPONENTS:
            raise ValueError(f"the fitted prior needs K >= 1 components (at most "
                             f"{MAX_COMPONENTS}: it is fitted to {FIT_SAMPLES} latents), got "
                             f"{self.components}")


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


@dataclass(frozen=True)
class ReplayConfig:
    """How replay is drawn, labelled and weighted, and how the generator is trained.

    ``replay_size``: replayed samples per iteration (None: the current batch's size).
    ``replay_weight``: weight of the replay loss; None gives van de Ven's 1 - 1/t.
    ``temperature``: None labels replay with hard labels (argmax over the classes seen so
    far); a value > 0 distills the frozen solver's soft targets at that temperature.
    ``input_mean``/``input_std``: the normalization the solver's inputs went through, per
    channel, so the generator learns and samples in [0, 1] and replay is mapped back.
    ``replay_labels``: 'solver' labels replay by the frozen solver; 'prior' by the class the
    generator's class-conditional prior drew it from.
    ``active_classes``: van de Ven's class-IL protocol: current and replay losses over the
    classes seen so far only (default: over all of the solver's outputs).
    """

    replay_size: int | None = None
    replay_weight: float | None = None
    temperature: float | None = None
    generator_iterations: int = 2000
    generator_batch_size: int = 128
    generator_lr: float = 1e-3
    input_mean: Sequence[float] | None = None
    input_std: Sequence[float] | None = None
    replay_labels: str = "solver"
    active_classes: bool = False

    def __post_init__(self) -> None:
        if self.replay_size is not None and self.replay_size <= 0:
            raise ValueError(f"replay_size must be > 0, got {self.replay_size}")
        if self.replay_weight is not None and not 0 <= self.replay_weight <= 1:
            raise ValueError(f"replay_weight must be in [0, 1], got {self.replay_weight}")
        if self.temperature is not None and not (math.isfinite(self.temperature)
                                                 and self.temperature > 0):
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if self.generator_iterations <= 0 or self.generator_batch_size <= 0:
            raise ValueError("generator_iterations and generator_batch_size must be > 0")
        if not (math.isfinite(self.generator_lr) and self.generator_lr > 0):
            raise ValueError(f"generator_lr must be > 0, got {self.generator_lr}")
        if (self.input_mean is None) != (self.input_std is None):
            raise ValueError("give both input_mean and input_std, or neither")
        if self.input_std is not None and any(s <= 0 for s in self.input_std):
            raise ValueError(f"input_std must be > 0, got {self.input_std}")
        if self.replay_labels not in REPLAY_LABELS:
            raise ValueError(f"replay_labels must be one of {REPLAY_LABELS}, "
                             f"got {self.replay_labels!r}")
        if self.replay_labels == "prior" and self.temperature is not None:
            raise ValueError("replay labelled by the prior has hard labels: drop temperature "
                             "(distillation needs the frozen solver's soft targets)")
