"""What one benchmark run is: a method with its settings on a stream, scenario, preset and seed.

A run is named twice, by the same settings: its ``run_id`` hashes them and its full protocol,
and its directory name says them in words (``<stream>-<scenario>-<method>-s<seed>-<run id>``).
Both stay as they were for runs made before the settings had a home of their own; the rules
that keep them so are written out once, in ``REPLAY_RECORD`` and ``identity_of``.

Plain Python, no torch: the driver checks a whole sweep before importing the heavy parts.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from cl_binvae.suite.config import STREAMS, StreamConfig
from cl_binvae.suite.presets import QUICK_ITERATIONS, protocol_for, shared_protocol
from cl_binvae.suite.registry import METHODS, Method, get_method
from cl_binvae.suite.replay_settings import GeneratorSettings
from cl_binvae.suite.settings import check_types

#: What a run records of our replay's settings, for every method: a method without them
#: records these values, as every run directory has since the first. A setting at its value
#: here is left out of the run id (r and distill excepted: the first runs named them), so the
#: runs made before it became a choice keep their ids.
REPLAY_RECORD = {"r": 0.0, "distill": False, "prior": "mixture", "prior_components": 20,
                 "replay_labels": "solver", "active_classes": False}
_NAMED_SINCE_THE_FIRST_RUNS = ("r", "distill")
_COMMON = ("stream", "scenario", "strategy", "seed", "preset", "iterations", "n_experiences")


@dataclass(frozen=True)
class RunConfig:
    """One run: a strategy on a stream and scenario with one seed, under a preset (cut to
    ``iterations`` per experience or ``n_experiences`` experiences when set).

    ``settings``: the method's own settings (``Method.settings``'s class); None takes the
    method's defaults. For our replay methods they are ``ReplaySettings`` (r, prior, ...).
    """

    stream: str = "split_mnist"
    scenario: str = "class"
    strategy: str = "naive"
    seed: int = 0
    preset: str = "paper"
    iterations: int | None = None
    n_experiences: int | None = None
    settings: Any = None

    def __post_init__(self) -> None:
        check_types(self, "run setting")
        method = get_method(self.strategy)
        self._settle(method)
        self._validate(method)
        self._name_once()

    def _settle(self, method: Method) -> None:
        """Take the method's default settings when none are given; ``ValueError`` for
        settings of another kind, or a pinned one moved from its value."""
        if self.settings is None:
            object.__setattr__(self, "settings", method.settings)
            return
        if method.settings is None:
            raise ValueError(f"{self.strategy} takes no settings, got {self.settings!r}")
        if type(self.settings) is not type(method.settings):
            raise ValueError(f"{self.strategy} takes {type(method.settings).__name__}, got "
                             f"{type(self.settings).__name__}")
        for name in method.pinned:
            if getattr(self.settings, name) != getattr(method.settings, name):
                takers = [m.name for m in _takers(name)]
                raise ValueError(f"{name} applies to methods that take it "
                                 f"({', '.join(takers) or 'none'}), not {self.strategy}")

    def _validate(self, method: Method) -> None:
        """``ValueError`` for settings that do not make one run."""
        self.stream_config()  # building it validates stream, scenario and n_experiences
        if self.scenario not in method.scenarios:
            raise ValueError(f"{self.strategy} supports the scenarios "
                             f"{', '.join(method.scenarios)}, not {self.scenario}")
        if self.settings is not None and hasattr(self.settings, "check_scenario"):
            self.settings.check_scenario(self.scenario)
        if not 0 <= self.seed < 2**32:
            raise ValueError(f"seeds must be in [0, 2**32), got {self.seed}")
        if self.iterations is not None and self.iterations <= 0:
            raise ValueError(f"iterations must be > 0, got {self.iterations}")
        self._protocol(self.preset, self.iterations)  # validates the preset and the cut

    def _name_once(self) -> None:
        """One protocol, one name (and one run id): ``quick`` is ``paper`` cut to its
        iterations; a ``cpu`` preset equal to ``paper`` is ``paper``; the stream's default
        number of experiences is no change of it; settings that can set a protocol's value
        name it only where it is not the preset's (their ``named_under(protocol)``)."""
        if self.preset == "quick":
            object.__setattr__(self, "preset", "paper")
            object.__setattr__(self, "iterations", QUICK_ITERATIONS)
        self._name_settings()
        if self.preset == "cpu" and self._configured("cpu") == self._configured("paper"):
            object.__setattr__(self, "preset", "paper")
            self._name_settings()
        if self.n_experiences == StreamConfig(self.stream).experiences:
            object.__setattr__(self, "n_experiences", None)

    def _name_settings(self) -> None:
        if hasattr(self.settings, "named_under"):
            protocol = self._protocol(self.preset, self.iterations)
            object.__setattr__(self, "settings", self.settings.named_under(protocol))

    def _protocol(self, preset: str, iterations: int | None) -> Any:
        table = self.method_record.protocol or shared_protocol
        return protocol_for(preset, self.stream, iterations, table)

    def _configured(self, preset: str) -> Any:
        """The uncut protocol of ``preset`` as this run's settings configure it."""
        return self._protocol(preset, None).configured(self.settings, self.seed)

    # -- reading and writing -------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The run as a run directory's ``config.json`` records it: flat, the settings beside
        the common fields, our replay's settings always there (``REPLAY_RECORD``)."""
        record = dict(REPLAY_RECORD)
        if self.settings is not None:
            record.update(dataclasses.asdict(self.settings))
        return {"stream": self.stream, "scenario": self.scenario, "strategy": self.strategy,
                "r": record.pop("r"), "seed": self.seed, "preset": self.preset,
                "distill": record.pop("distill"), "iterations": self.iterations,
                "n_experiences": self.n_experiences, **record}

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> RunConfig:
        """The run that ``to_dict`` (a ``config.json``) records; common fields it lacks take
        their defaults, our replay's settings it lacks their ``REPLAY_RECORD`` values (a
        record written before they existed), a method's other settings their defaults.
        ``ValueError`` for unknown or invalid settings, ``TypeError`` for a non-dict."""
        if not isinstance(record, dict):
            raise TypeError(f"a run's settings must be a JSON object, got {record!r}")
        common = {key: record[key] for key in _COMMON if key in record}
        method = get_method(common.get("strategy", cls.strategy))
        fields = () if method.settings is None else [
            f.name for f in dataclasses.fields(method.settings)]
        rest = {key: value for key, value in record.items() if key not in common}
        unknown = set(rest) - set(fields) - set(REPLAY_RECORD)
        if unknown:
            raise ValueError(f"unknown run settings {sorted(unknown)}")
        for key, value in rest.items():
            if key not in fields and value != REPLAY_RECORD[key]:
                raise ValueError(f"{key} applies to methods that take it "
                                 f"({', '.join(m.name for m in _takers(key)) or 'none'}), "
                                 f"not {method.name}")
        settings = None
        if method.settings is not None:
            # A setting the record lacks was not a choice when it was written: the run had
            # the value every run had then, not today's default.
            recorded = {key: value for key, value in REPLAY_RECORD.items() if key in fields}
            settings = dataclasses.replace(method.settings, **{
                **recorded, **{k: v for k, v in rest.items() if k in fields}})
        return cls(**common, settings=settings)

    # -- what the run is -----------------------------------------------------------------------
    @property
    def method_record(self) -> Method:
        """The registered method this run uses."""
        return get_method(self.strategy)

    @property
    def r(self) -> float:
        """The run's binarization radius: 0 for a method without one."""
        return self.settings.r if isinstance(self.settings, GeneratorSettings) else 0.0

    def stream_config(self) -> StreamConfig:
        """The stream this run trains on; permutations are seeded by the run's seed."""
        return StreamConfig(self.stream, self.scenario, self.n_experiences, seed=self.seed)

    @property
    def protocol(self) -> Any:
        """The preset's protocol for this stream and method, as the run's settings configure
        it (the generator with the run's r and prior)."""
        return self._protocol(self.preset, self.iterations).configured(self.settings, self.seed)

    @property
    def method(self) -> str:
        """The method as tables name it: the strategy, r for methods that take it, then what
        the settings say of themselves (the prior, labels, +distill, +active...)."""
        return self.label(with_r=True)

    def label(self, with_r: bool = True) -> str:
        """``method``, optionally without its r (the r-sweep's name for a line of runs)."""
        name = self.strategy
        if with_r and self.method_record.takes_r:
            name += f" r={self.r:g}"
        return name + (self.settings.label() if self.settings is not None else "")

    def r_zero_twin(self) -> RunConfig:
        """This run's settings under its method's ``r_baseline`` at r = 0 (binvae_gr -> dgr):
        the run it is compared with in paired differences and drawn at r = 0 in r sweeps.
        ``ValueError`` if the method has none, or that twin cannot take these settings."""
        twin = self._r_baseline()
        return dataclasses.replace(self, strategy=twin.name,
                                   settings=dataclasses.replace(self.settings, r=0.0))

    def plain_twin(self) -> RunConfig:
        """The ``r_baseline`` method as first run: r = 0, our replay's recorded values
        (``REPLAY_RECORD``: the mixture, solver labels), plain dgr. ``ValueError`` if the
        method names none."""
        twin = self._r_baseline()
        fields = {f.name for f in dataclasses.fields(twin.settings)}
        settings = dataclasses.replace(twin.settings, **{
            key: value for key, value in REPLAY_RECORD.items() if key in fields})
        return RunConfig(stream=self.stream, scenario=self.scenario, strategy=twin.name,
                         seed=self.seed, preset=self.preset, iterations=self.iterations,
                         n_experiences=self.n_experiences, settings=settings)

    def extended_twin(self) -> RunConfig:
        """This run as the method it ``extends`` (ewc_replay -> binvae_gr): the same protocol,
        seed and shared settings, without what this method adds; compared with it in paired
        differences. ``ValueError`` if the method extends none, or these settings lack that
        method's."""
        name = self.method_record.extends
        if name is None:
            raise ValueError(f"{self.strategy} extends no method")
        twin = get_method(name)
        if twin.settings is None:
            return dataclasses.replace(self, strategy=name, settings=None)
        try:
            shared = {f.name: getattr(self.settings, f.name)
                      for f in dataclasses.fields(twin.settings)}
        except AttributeError as error:
            raise ValueError(f"{self.strategy} lacks settings of {name}: {error}") from None
        return dataclasses.replace(self, strategy=name,
                                   settings=dataclasses.replace(twin.settings, **shared))

    def _r_baseline(self) -> Method:
        name = self.method_record.r_baseline
        if name is None:
            raise ValueError(f"{self.strategy} names no r_baseline method")
        twin = get_method(name)
        if type(twin.settings) is not type(self.settings):
            raise ValueError(f"{self.strategy}'s r_baseline {name} takes other settings")
        return twin

    @property
    def table_key(self) -> tuple:
        """Where this run's method sorts in a table: by the method's rank, then the order its
        settings give (the defaults first, then r)."""
        settings = () if self.settings is None else self.settings.sort_key()
        return (self.method_record.rank, self.strategy, *settings)

    def describe(self) -> dict:
        """The run and its full protocol, as JSON-ready dicts."""
        return {"run": self.to_dict(), "protocol": dataclasses.asdict(self.protocol)}

    @property
    def run_id(self) -> str:
        """A hash of the run and its protocol (``identity_of``): changing any number gives a
        new run."""
        return run_id_of(**self.describe())

    @property
    def dir_name(self) -> str:
        """The run directory's name: stream, scenario, method, seed and run id."""
        stream = self.stream if self.stream in STREAMS else _stem(self.stream)
        # What settings add of their own (`` ewc_lambda=1e9``) is joined by a dash too.
        method = (self.method.replace(" r=", "-r").replace(" prior=", "-")
                  .replace(" labels=", "-labels_").replace("+", "-").replace(" ", "-"))
        return f"{stream}-{self.scenario}-{method}-s{self.seed}-{self.run_id}"


def identity_of(run: dict[str, Any], protocol: dict[str, Any]) -> dict[str, Any]:
    """What a run id hashes, from the run and protocol as ``describe()`` (or a run
    directory's ``config.json``) gives them, without what runs made before a setting existed
    did not name: a ``REPLAY_RECORD`` setting at its recorded value (or absent, in a record
    written before it existed), the mixture prior of the generator, and a solver without
    batch norm in its hidden layers. Taking the recorded dicts lets a reader check that a
    record still hashes to its id, whatever today's presets say."""
    run = {**REPLAY_RECORD, **run}
    for key, value in REPLAY_RECORD.items():
        if key not in _NAMED_SINCE_THE_FIRST_RUNS and run[key] == value:
            del run[key]
    protocol = copy.deepcopy(protocol)
    generator = protocol.get("generator")
    if isinstance(generator, dict) and isinstance(generator.get("prior"), dict) \
            and generator["prior"].get("name") == "mixture":
        del generator["prior"]
    solver = protocol.get("solver")
    if isinstance(solver, dict) and solver.get("fc_batch_norm", True) is False:
        del solver["fc_batch_norm"]
    return {"run": run, "protocol": protocol}


def run_id_of(run: dict[str, Any], protocol: dict[str, Any]) -> str:
    """The run id of ``identity_of(run, protocol)``: 12 hex digits of its SHA-256."""
    blob = json.dumps(identity_of(run, protocol), sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def _takers(field: str) -> list[Method]:
    """The registered methods whose settings take ``field`` as a flag."""
    return [m for m in METHODS.values() if any(f.field == field for f in m.flags)]


def _stem(path: str) -> str:
    name = path.replace("\\", "/").rsplit("/", 1)[-1]
    return name.removesuffix(".npz")
