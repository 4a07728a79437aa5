"""What one benchmark run is: its configuration, and the protocol a preset gives each stream.

``paper`` follows van de Ven et al. ("Three scenarios for continual learning") per stream;
``cpu`` is a protocol of its own for a CPU: per stream, models and iterations chosen (by the
pilot in ``results/pilots/``) so that every method trains to a meaningful point in about ten
CPU-minutes per run. ``quick`` keeps the paper architectures but cuts iterations so a whole
stream takes minutes on a CPU: a smoke check, not a result.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass

from cl_binvae.priors import PRIORS, PriorConfig
from cl_binvae.regularizer import check_radius
from cl_binvae.replay import REPLAY_LABELS
from cl_binvae.solvers import SolverConfig
from cl_binvae.streams import STREAMS, StreamConfig
from cl_binvae.vae import VAEConfig

STRATEGIES = ("naive", "joint", "er", "avalanche_gr", "dgr", "binvae_gr")
GENERATIVE = ("dgr", "binvae_gr")  # strategies that use our replay plugin
PRESETS = ("paper", "cpu", "quick")


@dataclass(frozen=True)
class Protocol:
    """The numbers behind a run: models, iterations, batch sizes, learning rates."""

    solver: SolverConfig
    generator: VAEConfig  # r is set per run
    iterations: int  # solver minibatches per experience
    generator_iterations: int  # generator minibatches per experience
    batch_size: int = 128
    replay_size: int = 128
    lr: float = 1e-3
    generator_lr: float = 1e-3
    eval_batch_size: int = 1000
    er_samples_per_class: int = 100
    temperature: float = 2.0  # distillation temperature (van de Ven et al.)


_MLP_400 = SolverConfig("mlp", (400, 400))
_PAPER = {
    # van de Ven et al.: 2x400 MLP, 2000 iterations, batch 128 + 128, Adam 1e-3, VAE z=100.
    "split_mnist": Protocol(_MLP_400, VAEConfig(hidden=(400, 400), z_dim=100), 2000, 2000),
    # Their permuted-MNIST: 2x1000 MLP, 5000 iterations, Adam 1e-4 for solver and generator.
    "permuted_mnist": Protocol(SolverConfig("mlp", (1000, 1000)),
                               VAEConfig(hidden=(1000, 1000), z_dim=100), 5000, 5000,
                               lr=1e-4, generator_lr=1e-4),
    # No pre-trained features (the hard, open case): a 3-layer conv solver and the conv VAE,
    # small enough to train from scratch, with the split-MNIST iteration and batch budget.
    "split_cifar10": Protocol(SolverConfig("conv", (256,), (32, 64, 128)),
                              VAEConfig(arch="conv", channels=(32, 64, 128), z_dim=100,
                                        likelihood="bernoulli"), 2000, 2000),
}
_CPU = {
    # The paper preset already fits: about 7 CPU-minutes for a generative run.
    "split_mnist": _PAPER["split_mnist"],
    # Split-MNIST's models, learning rate and batch on the permuted stream: 2x400 MLPs at
    # lr 1e-3 learn in a fifth of the paper's 5000 iterations what 2x1000 at 1e-4 learn in all.
    "permuted_mnist": dataclasses.replace(_PAPER["split_mnist"], iterations=1000,
                                          generator_iterations=1000),
    "split_cifar10": dataclasses.replace(_PAPER["split_cifar10"], iterations=300,
                                         generator_iterations=300),
}
_QUICK_ITERATIONS = 300


def protocol_for(preset: str, stream: str, iterations: int | None = None) -> Protocol:
    """The protocol of ``preset`` for ``stream`` (a user's .npz gets split-MNIST's MLPs).

    ``iterations`` overrides both the solver's and the generator's iterations per experience.
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {PRESETS}")
    presets = _CPU if preset == "cpu" else _PAPER
    protocol = presets.get(stream, presets["split_mnist"])
    if preset == "quick":
        protocol = dataclasses.replace(protocol, iterations=_QUICK_ITERATIONS,
                                       generator_iterations=_QUICK_ITERATIONS)
    if iterations is not None:
        protocol = dataclasses.replace(protocol, iterations=iterations,
                                       generator_iterations=iterations)
    return protocol


# Settings added after the first published runs: left out of the run id at these values, so
# those runs keep their directories.
_LATER_DEFAULTS = {"prior": "mixture", "prior_components": 20, "replay_labels": "solver",
                   "active_classes": False}


@dataclass(frozen=True)
class RunConfig:
    """One run: a strategy on a stream and scenario with one seed (and r, for binvae_gr).

    Generator strategies also name the prior replay samples from (``prior``, with
    ``prior_components`` for ``fitted``), how replay is labelled (``replay_labels``) and
    whether class-IL losses are restricted to the classes seen so far (``active_classes``).
    """

    stream: str = "split_mnist"
    scenario: str = "class"
    strategy: str = "binvae_gr"
    r: float = 0.0
    seed: int = 0
    preset: str = "paper"
    distill: bool = False
    iterations: int | None = None
    n_experiences: int | None = None
    prior: str = "mixture"
    prior_components: int = 20
    replay_labels: str = "solver"
    active_classes: bool = False

    def __post_init__(self) -> None:
        self.stream_config()  # building it validates stream, scenario and n_experiences
        if self.strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy {self.strategy!r}; choose one of {STRATEGIES}")
        check_radius(self.r)
        if self.r and self.strategy != "binvae_gr":
            raise ValueError(f"r applies to binvae_gr only, not {self.strategy}")
        PriorConfig(self.prior, self.prior_components)  # validates name and K
        if self.prior == "standard" and self.r == 0:  # the same N(0, I): one run, one name
            object.__setattr__(self, "prior", "mixture")
        if self.replay_labels not in REPLAY_LABELS:
            raise ValueError(f"unknown replay labels {self.replay_labels!r}; choose one of "
                             f"{REPLAY_LABELS}")
        if self.replay_labels == "prior" and self.prior != "codes":
            raise ValueError("replay labelled by the prior needs --prior codes")
        if self.replay_labels == "prior" and self.distill:
            raise ValueError("--distill needs replay labelled by the solver")
        if self.active_classes and self.scenario != "class":
            raise ValueError("--active-classes applies to class-IL only")
        generator_only = {"distill": self.distill, "prior": self.prior != "mixture",
                          "replay labels": self.replay_labels != "solver",
                          "active classes": self.active_classes}
        for what, is_set in generator_only.items():
            if is_set and self.strategy not in GENERATIVE:
                raise ValueError(f"{what} applies to dgr and binvae_gr, not {self.strategy}")
        if self.strategy == "avalanche_gr" and self.scenario == "task":
            raise ValueError("avalanche_gr ignores task labels (Avalanche's GenerativeReplay "
                             "is not task-aware); use --scenario class or domain")
        if not 0 <= self.seed < 2**32:
            raise ValueError(f"seeds must be in [0, 2**32), got {self.seed}")
        if self.iterations is not None and self.iterations <= 0:
            raise ValueError(f"iterations must be > 0, got {self.iterations}")
        if self.preset not in PRESETS:
            raise ValueError(f"unknown preset {self.preset!r}; choose one of {PRESETS}")

    def stream_config(self) -> StreamConfig:
        """The stream this run trains on; permutations are seeded by the run's seed."""
        return StreamConfig(self.stream, self.scenario, self.n_experiences, seed=self.seed)

    @property
    def protocol(self) -> Protocol:
        """The preset's protocol for this stream, with this run's r and prior in the generator."""
        protocol = protocol_for(self.preset, self.stream, self.iterations)
        prior = PriorConfig(self.prior, self.prior_components, seed=self.seed)
        return dataclasses.replace(protocol, generator=dataclasses.replace(
            protocol.generator, r=self.r, prior=prior))

    @property
    def method(self) -> str:
        """Strategy, with r for binvae_gr, the prior and labels when not the defaults, and
        +distill / +active where set (as the tables name it)."""
        name = f"{self.strategy} r={self.r:g}" if self.strategy == "binvae_gr" else self.strategy
        if self.prior != "mixture":
            k = self.prior_components if self.prior == "fitted" else ""
            name += f" prior={self.prior}{k}"
        if self.replay_labels != "solver":
            name += f" labels={self.replay_labels}"
        return name + ("+distill" if self.distill else "") + ("+active" if self.active_classes
                                                              else "")

    def describe(self) -> dict:
        """The run and its full protocol, as JSON-ready dicts."""
        return {"run": dataclasses.asdict(self),
                "protocol": dataclasses.asdict(self.protocol)}

    @property
    def run_id(self) -> str:
        """A hash of the run and its protocol: changing any number gives a new run."""
        identity = self.describe()
        run, generator = identity["run"], identity["protocol"]["generator"]
        for key, default in _LATER_DEFAULTS.items():
            if run[key] == default or (key == "prior_components" and self.prior != "fitted"):
                del run[key]
        if self.prior == "mixture":
            del generator["prior"]
        blob = json.dumps(identity, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]

    @property
    def dir_name(self) -> str:
        stream = self.stream if self.stream in STREAMS else _stem(self.stream)
        method = (self.method.replace(" r=", "-r").replace(" prior=", "-")
                  .replace(" labels=", "-labels_").replace("+", "-"))
        return f"{stream}-{self.scenario}-{method}-s{self.seed}-{self.run_id}"


def _stem(path: str) -> str:
    name = path.replace("\\", "/").rsplit("/", 1)[-1]
    return name.removesuffix(".npz")

