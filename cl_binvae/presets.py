"""What one benchmark run is: its configuration, and the protocol a preset gives each stream.

``paper`` follows van de Ven et al. ("Three scenarios for continual learning") per stream;
``cpu`` is a protocol of its own for a CPU: per stream, models and iterations chosen (by the
pilot in ``results/pilots/``) so that every method trains to a meaningful point in about ten
CPU-minutes per run; where it equals ``paper`` (split-MNIST) a run is recorded as ``paper``.
``quick`` keeps the paper architectures but cuts iterations so a whole stream takes minutes on
a CPU: a smoke check, not a result, recorded as ``paper`` cut to those iterations.

Plain Python, no torch: the driver checks a whole sweep before importing the heavy parts.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import typing
from dataclasses import dataclass
from typing import Any

from cl_binvae.configs import (
    PRIOR_NAMES,
    REPLAY_LABELS,
    STREAMS,
    PriorConfig,
    SolverConfig,
    StreamConfig,
    VAEConfig,
    check_radius,
)
from cl_binvae.methods import Method, get_method

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
    # Its hidden ReLUs die under class-IL fine-tuning (the cpu preset adds batch norm there);
    # left as it is until a GPU session runs it, so the runs made so far keep their protocol.
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
    # The paper's models at 300 iterations, with batch norm in the solver's hidden layer:
    # without it, class-IL's first minibatches of each new experience (loss ~15 on the old
    # classes' logits) kill its ReLUs (48%, 91%, 99% dead after experiences 1-3, seed 0), and
    # fine-tuning and ER end predicting one class (10%). See results/pilots/cpu_preset.
    "split_cifar10": dataclasses.replace(
        _PAPER["split_cifar10"], iterations=300, generator_iterations=300,
        solver=dataclasses.replace(_PAPER["split_cifar10"].solver, fc_batch_norm=True)),
}
_QUICK_ITERATIONS = 300


def protocol_for(preset: str, stream: str, iterations: int | None = None) -> Protocol:
    """The protocol of ``preset`` for ``stream`` (a user's .npz gets split-MNIST's MLPs).

    ``iterations`` overrides both the solver's and the generator's iterations per experience
    (a cut of the preset). ``ValueError`` where that would name one protocol twice: with
    ``quick`` (which only sets iterations), or at the preset's own number.
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {PRESETS}")
    if preset == "quick" and iterations is not None:
        raise ValueError("--iterations replaces the quick preset's only change (300 "
                         "iterations): for that protocol use --preset paper --iterations N")
    presets = _CPU if preset == "cpu" else _PAPER
    protocol = presets.get(stream, presets["split_mnist"])
    if preset == "quick":
        protocol = dataclasses.replace(protocol, iterations=_QUICK_ITERATIONS,
                                       generator_iterations=_QUICK_ITERATIONS)
    if iterations is not None and iterations == protocol.iterations:
        raise ValueError(f"--iterations {iterations} is the {preset} preset's own number: "
                         "drop --iterations (a cut would name the same protocol twice)")
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
        _check_types(self)
        object.__setattr__(self, "r", check_radius(self.r))  # an int r hashes as its float
        self._validate()
        self._name_once()

    def _validate(self) -> None:
        """``ValueError`` for settings that do not make one run."""
        self.stream_config()  # building it validates stream, scenario and n_experiences
        method = get_method(self.strategy)
        if self.scenario not in method.scenarios:
            raise ValueError(f"{self.strategy} supports the scenarios "
                             f"{', '.join(method.scenarios)}, not {self.scenario}")
        if self.r and not method.takes_r:
            raise ValueError(f"r applies to methods that take it (binvae_gr), not "
                             f"{self.strategy}")
        PriorConfig(self.prior, self.prior_components)  # validates name and K
        if self.replay_labels not in REPLAY_LABELS:
            raise ValueError(f"unknown replay labels {self.replay_labels!r}; choose one of "
                             f"{REPLAY_LABELS}")
        if self.replay_labels == "prior" and self.prior != "codes":
            raise ValueError("replay labelled by the prior needs --prior codes")
        if self.replay_labels == "prior" and self.r == 0:
            raise ValueError("at r = 0 the codes prior gives every class the same mode, so the "
                             "drawn class says nothing about a replayed image: label replay "
                             "by the solver, or use r > 0")
        if self.replay_labels == "prior" and self.distill:
            raise ValueError("--distill needs replay labelled by the solver")
        if self.active_classes and self.scenario != "class":
            raise ValueError("--active-classes applies to class-IL only")
        generator_only = {"distill": self.distill, "prior": self.prior != "mixture",
                          "replay labels": self.replay_labels != "solver",
                          "active classes": self.active_classes}
        for what, is_set in generator_only.items():
            if is_set and not method.generator:
                raise ValueError(f"{what} applies to methods with our replay plugin (dgr, "
                                 f"binvae_gr), not {self.strategy}")
        if not 0 <= self.seed < 2**32:
            raise ValueError(f"seeds must be in [0, 2**32), got {self.seed}")
        if self.iterations is not None and self.iterations <= 0:
            raise ValueError(f"iterations must be > 0, got {self.iterations}")
        protocol_for(self.preset, self.stream, self.iterations)  # validates the preset

    def _name_once(self) -> None:
        """One protocol, one name (and one run id): at r = 0 the standard prior and the codes
        prior (every class's mode at 0) are the mixture, N(0, I); K only matters to the
        fitted prior; ``quick`` is ``paper`` cut to its iterations; a ``cpu`` preset equal to
        ``paper`` (split-MNIST's) is ``paper``; the stream's default number of experiences is
        no change of it."""
        if self.r == 0 and self.prior in ("standard", "codes"):
            object.__setattr__(self, "prior", "mixture")
        if self.prior != "fitted":
            object.__setattr__(self, "prior_components", _LATER_DEFAULTS["prior_components"])
        if self.preset == "quick":
            object.__setattr__(self, "preset", "paper")
            object.__setattr__(self, "iterations", _QUICK_ITERATIONS)
        if self.preset == "cpu" \
                and protocol_for("cpu", self.stream) == protocol_for("paper", self.stream):
            object.__setattr__(self, "preset", "paper")
        if self.n_experiences == StreamConfig(self.stream).experiences:
            object.__setattr__(self, "n_experiences", None)

    @classmethod
    def from_dict(cls, settings: dict[str, Any]) -> RunConfig:
        """The run a run directory's ``config.json`` records; settings added since it was
        written take their defaults. ``ValueError`` for unknown or invalid settings,
        ``TypeError`` for something that is not a dict."""
        if not isinstance(settings, dict):
            raise TypeError(f"a run's settings must be a JSON object, got {settings!r}")
        unknown = set(settings) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown run settings {sorted(unknown)}")
        return cls(**settings)

    @property
    def method_record(self) -> Method:
        """The registered method this run uses."""
        return get_method(self.strategy)

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
        """The method as tables name it: the strategy, r for methods that take it, the prior
        and labels when not the defaults, and +distill / +active where set."""
        return self.label(with_r=True)

    def label(self, with_r: bool = True) -> str:
        """``method``, optionally without its r (the r-sweep's name for a line of runs)."""
        name = self.strategy
        if with_r and self.method_record.takes_r:
            name += f" r={self.r:g}"
        if self.prior != "mixture":
            k = self.prior_components if self.prior == "fitted" else ""
            name += f" prior={self.prior}{k}"
        if self.replay_labels != "solver":
            name += f" labels={self.replay_labels}"
        return name + ("+distill" if self.distill else "") + ("+active" if self.active_classes
                                                              else "")

    def r_zero_twin(self) -> RunConfig:
        """This run's settings under its method's ``r_baseline`` at r = 0 (binvae_gr -> dgr):
        the run it is compared with in paired differences and drawn at r = 0 in r sweeps.
        ``ValueError`` if the method has none, or that twin cannot take these settings."""
        return dataclasses.replace(self, strategy=self._r_baseline(), r=0.0)

    def plain_twin(self) -> RunConfig:
        """The ``r_baseline`` method at r = 0 with the default prior and replay settings
        (plain dgr). ``ValueError`` if the method names none."""
        return RunConfig(strategy=self._r_baseline(), stream=self.stream, scenario=self.scenario,
                         seed=self.seed, preset=self.preset, iterations=self.iterations,
                         n_experiences=self.n_experiences)

    def _r_baseline(self) -> str:
        twin = self.method_record.r_baseline
        if twin is None:
            raise ValueError(f"{self.strategy} names no r_baseline method")
        return twin

    @property
    def table_key(self) -> tuple:
        """Where this run's method sorts in a table: by the method's rank, then its settings
        (the defaults first, priors in the order of ``PRIOR_NAMES``), then r."""
        return (self.method_record.rank, self.strategy, PRIOR_NAMES.index(self.prior),
                self.prior_components, REPLAY_LABELS.index(self.replay_labels), self.distill,
                self.active_classes, self.r)

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
            if run[key] == default:
                del run[key]
        if self.prior == "mixture":
            del generator["prior"]
        solver = identity["protocol"]["solver"]
        if not solver["fc_batch_norm"]:  # added later: runs without it keep their ids
            del solver["fc_batch_norm"]
        blob = json.dumps(identity, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]

    @property
    def dir_name(self) -> str:
        stream = self.stream if self.stream in STREAMS else _stem(self.stream)
        method = (self.method.replace(" r=", "-r").replace(" prior=", "-")
                  .replace(" labels=", "-labels_").replace("+", "-"))
        return f"{stream}-{self.scenario}-{method}-s{self.seed}-{self.run_id}"


def _check_types(config: Any) -> None:
    """Raise ``ValueError`` for a field whose value does not have its annotated type: an int
    passes for a float, a bool only for a bool (it is an int to ``isinstance``)."""
    hints = typing.get_type_hints(type(config))
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        kinds = typing.get_args(hints[field.name]) or (hints[field.name],)
        if isinstance(value, bool):
            ok = bool in kinds
        else:
            ok = isinstance(value, kinds) or (float in kinds and isinstance(value, int))
        if not ok:
            names = " or ".join("None" if k is type(None) else k.__name__ for k in kinds)
            raise ValueError(f"run setting {field.name} = {value!r} is not {names}")


def _stem(path: str) -> str:
    name = path.replace("\\", "/").rsplit("/", 1)[-1]
    return name.removesuffix(".npz")

