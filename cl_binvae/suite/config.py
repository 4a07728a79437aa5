"""The suite's configuration of streams and solvers.

Plain Python, no torch: the driver parses and checks a whole sweep with these before it pays
for importing torch and Avalanche.
"""

from __future__ import annotations

from dataclasses import dataclass

SCENARIOS = ("class", "task", "domain")
STREAMS = ("split_mnist", "permuted_mnist", "split_cifar10")
_SOURCES = {"split_mnist": "mnist", "permuted_mnist": "mnist", "split_cifar10": "cifar10"}
SOLVER_ARCHITECTURES = ("mlp", "conv")
#: The most experiences a stream may have: after each one the solver is tested on all of
#: them, T x T evaluations, which at 100 is already hours on a CPU.
MAX_EXPERIENCES = 100
#: Avalanche loggers the driver can attach, and the package each needs (None: always there).
LOGGERS = {"text": None, "csv": None, "tensorboard": "tensorboard", "wandb": "wandb"}


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
        if self.n_experiences is not None and not 1 <= self.n_experiences <= MAX_EXPERIENCES:
            raise ValueError(f"n_experiences must be in [1, {MAX_EXPERIENCES}] (after each "
                             "experience the solver is tested on all of them), got "
                             f"{self.n_experiences}")

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
