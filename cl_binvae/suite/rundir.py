"""One run's directory: its file names, the records kept there, and whether it is finished.

    <out>/<stream>-<scenario>-<method>-s<seed>-<run id>/
        config.json          RunRecord: the run, its full protocol, git commit, versions, device
        accuracy_matrix.csv  accuracy on every experience after each one (joint: one row)
        diagnostics.csv      generator diagnostics after each experience (generator methods)
        samples_exp<i>.png   generator samples after experience i
        progress.pt          the state after the last finished experience (removed at the end)
        progress_before.pt   the state after the experience before it (the same), to check that
                             a method registered resumable does resume
        metrics.json         RunMetrics, written last: a run is finished when it and everything
                             it summarizes are there and consistent
        error.txt            the traceback of a run that failed once training began (removed
                             when it runs again)

The driver writes through these classes and resume, tables and figures read through them, so
a reader checks exactly what the writer wrote. Every write is atomic.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cl_binvae.suite.atomic import write_json, write_text
from cl_binvae.suite.metrics import (
    average_accuracy_per_step,
    average_forgetting,
    backward_transfer,
    final_average_accuracy,
)
from cl_binvae.suite.registry import METHODS
from cl_binvae.suite.run_config import RunConfig, run_id_of

CONFIG_FILE = "config.json"
MATRIX_FILE = "accuracy_matrix.csv"
DIAGNOSTICS_FILE = "diagnostics.csv"
METRICS_FILE = "metrics.json"
PROGRESS_FILE = "progress.pt"
ERROR_FILE = "error.txt"
#: What ``metrics.json`` records of the trained strategy's memory: the fields of
#: ``cl_binvae.suite.footprint.Footprint`` (this module imports no torch).
FOOTPRINT_KEYS = ("model_parameters", "extra_parameters", "stored_samples")
JOINT_ROW = "joint"  # the accuracy matrix's row label for a method trained on all at once
#: Where the suite reports what it finds wrong with run directories (one line each).
Notify = Callable[[str], None]


def samples_name(experience: int) -> str:
    """File name of the generator samples drawn after ``experience``."""
    return f"samples_exp{experience}.png"


_WRITTEN_HERE = re.compile(r"(config|metrics)\.json|(accuracy_matrix|diagnostics)\.csv|"
                           r"progress(_before)?\.pt|error\.txt|samples_exp\d+\.png")


def written_here(name: str) -> bool:
    """Whether the suite writes a file called ``name`` in a run directory."""
    return _WRITTEN_HERE.fullmatch(name) is not None


class RunError(ValueError):
    """A run directory is unfinished or damaged; the message says what is wrong."""


class UnknownMethod(RunError):
    """A run directory's method is not registered in this process (a user's method whose
    file was not imported)."""

    def __init__(self, method: str) -> None:
        super().__init__(f"{CONFIG_FILE}: method {method!r} is not registered (give the file "
                         "that registers it with --import)")
        self.method = method


@dataclass(frozen=True)
class RunRecord:
    """``config.json``: what ran, with what code, where."""

    run_id: str
    run: RunConfig
    protocol: dict[str, Any]  # as it ran; a later change of the preset does not rewrite it
    git_commit: str
    versions: dict[str, str]
    device: str

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict, keys in the order of the file."""
        return {"run_id": self.run_id, "run": self.run.to_dict(),
                "protocol": self.protocol, "git_commit": self.git_commit,
                "versions": self.versions, "device": self.device}

    @classmethod
    def from_json(cls, data: Any) -> RunRecord:
        """Parse and check a ``config.json``; ``RunError`` says what is wrong."""
        obj = _object(data, CONFIG_FILE)
        settings = _get(obj, "run", dict, CONFIG_FILE)
        strategy = settings.get("strategy")
        if isinstance(strategy, str) and strategy not in METHODS:
            raise UnknownMethod(strategy)
        try:
            run = RunConfig.from_dict(settings)
        except (ValueError, TypeError) as err:
            raise RunError(f"{CONFIG_FILE}: {err}") from None
        record = cls(run_id=_get(obj, "run_id", str, CONFIG_FILE), run=run,
                     protocol=_get(obj, "protocol", dict, CONFIG_FILE),
                     git_commit=_get(obj, "git_commit", str, CONFIG_FILE),
                     versions=_get(obj, "versions", dict, CONFIG_FILE),
                     device=_get(obj, "device", str, CONFIG_FILE))
        # The record must hash to its own id: a hand-edited setting or protocol would
        # otherwise pass for a run that never ran.
        if run_id_of(settings, record.protocol) != record.run_id:
            raise RunError(f"{CONFIG_FILE}: its run and protocol do not hash to its run_id "
                           f"{record.run_id}: it was edited after the run")
        if record.run_id != run.run_id:
            today = json.loads(json.dumps(run.describe()["protocol"], default=str))
            if record.protocol != today:
                raise RunError(f"{CONFIG_FILE}: made under an earlier {run.preset} preset (its "
                               f"protocol has changed since); rerun it to tabulate it")
            raise RunError(f"{CONFIG_FILE}: run_id {record.run_id} does not match its settings "
                           f"({run.run_id})")
        return record


@dataclass(frozen=True)
class RunMetrics:
    """``metrics.json``: the summary of a finished run (accuracies in [0, 1])."""

    final_avg_accuracy: float
    avg_forgetting: float | None  # None with a single row (joint)
    bwt: float | None
    fwt: float | None
    avg_accuracy_per_step: list[float] | None
    n_experiences: int
    wall_clock_s: float
    # What the trained strategy keeps (cl_binvae.suite.footprint); None in runs made before
    # these were recorded.
    model_parameters: int | None = None
    extra_parameters: int | None = None
    stored_samples: int | None = None

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict, keys in the order of the file."""
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: Any) -> RunMetrics:
        """Parse and check a ``metrics.json``; ``RunError`` says what is wrong."""
        obj = _object(data, METRICS_FILE)
        unknown = set(obj) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise RunError(f"{METRICS_FILE}: unknown keys {sorted(unknown)}")
        n = _get(obj, "n_experiences", int, METRICS_FILE)
        if n < 1:
            raise RunError(f"{METRICS_FILE}: n_experiences is {n}")
        per_step = _get(obj, "avg_accuracy_per_step", (list, type(None)), METRICS_FILE)
        if per_step is not None and (len(per_step) != n or not all(map(_finite, per_step))):
            raise RunError(f"{METRICS_FILE}: avg_accuracy_per_step is not {n} numbers")
        return cls(final_avg_accuracy=_number(obj, "final_avg_accuracy"),
                   avg_forgetting=_number(obj, "avg_forgetting", optional=True),
                   bwt=_number(obj, "bwt", optional=True),
                   fwt=_number(obj, "fwt", optional=True),
                   avg_accuracy_per_step=None if per_step is None else list(map(float, per_step)),
                   n_experiences=n, wall_clock_s=_number(obj, "wall_clock_s"),
                   **{key: _count(obj, key) for key in FOOTPRINT_KEYS})


@dataclass(frozen=True)
class RunDirectory:
    """The folder of one run, and reading and writing its files."""

    path: Path

    @classmethod
    def of(cls, run: RunConfig, out_root: str | Path) -> RunDirectory:
        """The directory ``run`` writes to under ``out_root``."""
        return cls(Path(out_root) / run.dir_name)

    def file(self, name: str) -> Path:
        """Path of one of the run's files (``CONFIG_FILE``, ``MATRIX_FILE``, ...)."""
        return self.path / name

    # -- writing ---------------------------------------------------------------------------
    def write_record(self, record: RunRecord) -> None:
        """Write ``config.json``."""
        write_json(self.file(CONFIG_FILE), record.to_json())

    def write_results(self, matrix: np.ndarray, joint: bool, metrics: RunMetrics,
                      diagnostics: list[dict[str, float]]) -> None:
        """Write the accuracy matrix, the diagnostics (if any), and ``metrics.json`` last."""
        rows = [JOINT_ROW] if joint else [str(i) for i in range(len(matrix))]
        lines = ["after," + ",".join(f"exp_{j}" for j in range(matrix.shape[1]))]
        lines += [f"{label}," + ",".join(f"{v:.6f}" for v in row)
                  for label, row in zip(rows, matrix, strict=True)]
        write_text(self.file(MATRIX_FILE), "\n".join(lines) + "\n")
        if diagnostics:
            import pandas as pd  # only generator methods have diagnostics

            write_text(self.file(DIAGNOSTICS_FILE), pd.DataFrame(diagnostics).to_csv(index=False))
        write_json(self.file(METRICS_FILE), metrics.to_json())

    # -- reading ---------------------------------------------------------------------------
    def read_record(self) -> RunRecord:
        """Parse ``config.json``, or raise ``RunError``."""
        return RunRecord.from_json(_read_json(self.file(CONFIG_FILE)))

    def read_metrics(self) -> RunMetrics:
        """Parse ``metrics.json``, or raise ``RunError`` (``unfinished`` when it is absent)."""
        if not self.file(METRICS_FILE).exists():
            raise RunError(f"unfinished (no {METRICS_FILE})")
        return RunMetrics.from_json(_read_json(self.file(METRICS_FILE)))

    def read_matrix(self, n_experiences: int, joint: bool) -> np.ndarray:
        """The accuracy matrix: T x T, or 1 x T for a joint run; ``RunError`` otherwise."""
        try:
            text = self.file(MATRIX_FILE).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise RunError(f"{MATRIX_FILE} is missing") from None
        except (OSError, UnicodeDecodeError) as err:
            raise RunError(f"{MATRIX_FILE} is unreadable ({err})") from None
        lines = text.strip().splitlines()
        header = ["after"] + [f"exp_{j}" for j in range(n_experiences)]
        rows = [JOINT_ROW] if joint else [str(i) for i in range(n_experiences)]
        try:
            if not lines or lines[0].split(",") != header:
                raise ValueError("wrong header")
            cells = [line.split(",") for line in lines[1:]]
            if [c[0] for c in cells] != rows or any(len(c) != len(header) for c in cells):
                raise ValueError("wrong rows")
            values = np.loadtxt(io.StringIO("\n".join(",".join(c[1:]) for c in cells)),
                                delimiter=",", ndmin=2, dtype=float)
        except ValueError as err:
            raise RunError(f"{MATRIX_FILE} is not a {len(rows)} x {n_experiences} accuracy matrix "
                           f"with rows {rows} ({err})") from None
        if not np.all(np.isfinite(values) & (values >= 0) & (values <= 1)):
            raise RunError(f"{MATRIX_FILE} has entries that are not accuracies in [0, 1]")
        return values

    def read_diagnostics(self) -> Any:
        """``diagnostics.csv`` as a DataFrame, or ``RunError``."""
        import pandas as pd

        try:
            return pd.read_csv(self.file(DIAGNOSTICS_FILE)).apply(pd.to_numeric)
        except FileNotFoundError:
            raise RunError(f"{DIAGNOSTICS_FILE} is missing") from None
        except (OSError, ValueError, TypeError) as err:  # pandas parse errors: ValueErrors
            raise RunError(f"{DIAGNOSTICS_FILE} is unreadable ({err})") from None

    def read_finished(self) -> tuple[RunRecord, RunMetrics, np.ndarray]:
        """Record, metrics and accuracy matrix of a finished run; ``RunError`` saying what is
        wrong for an unfinished or damaged one. Finished means that the files agree with each
        other and with the directory's name: ``config.json`` hashes to the run id the name
        ends with, and the numbers in ``metrics.json`` are those of the accuracy matrix."""
        metrics = self.read_metrics()
        record = self.read_record()
        for what, name in (("directory name", self.path.name), ("stream", record.run.stream)):
            if not _utf8(name):  # tables and indexes could not write it
                raise RunError(f"the run's {what} is not UTF-8; rename it and rerun")
        if not self.path.name.endswith(f"-{record.run_id}"):
            raise RunError(f"{CONFIG_FILE}: it records run {record.run_id}, but the directory's "
                           "name is not that run's (its files were copied or edited)")
        method = record.run.method_record
        matrix = self.read_matrix(metrics.n_experiences, method.joint)
        _check_metrics(metrics, matrix, method.joint)
        if method.diagnosed:
            frame = self.read_diagnostics()
            if list(frame.get("experience", [])) != list(range(len(matrix))):
                raise RunError(f"{DIAGNOSTICS_FILE} does not have one row per experience")
        return record, metrics, matrix


def _check_metrics(metrics: RunMetrics, matrix: np.ndarray, joint: bool) -> None:
    """``RunError`` unless ``metrics`` are the numbers ``matrix`` gives (the matrix is written
    to 6 decimals). FWT needs a fresh model's accuracies, which the directory does not keep:
    it is only held to the range the matrix allows."""
    expected = {"final_avg_accuracy": final_average_accuracy(matrix),
                "avg_forgetting": average_forgetting(matrix), "bwt": backward_transfer(matrix),
                "avg_accuracy_per_step": None if joint else average_accuracy_per_step(matrix)}
    for key, want in expected.items():
        have = getattr(metrics, key)
        if not _agree(have, want):
            raise RunError(f"{METRICS_FILE} and {MATRIX_FILE} disagree: {key} is {have} in "
                           f"one and {want} from the other")
    if len(matrix) < 2:
        bounds = None
    else:  # fwt = mean_j acc[j-1, j] - initial[j], with every initial[j] in [0, 1]
        before = float(np.mean([matrix[j - 1, j] for j in range(1, len(matrix))]))
        bounds = (before - 1, before)
    if (metrics.fwt is None) != (bounds is None) or (
            bounds is not None and not bounds[0] - 1e-5 <= metrics.fwt <= bounds[1] + 1e-5):
        raise RunError(f"{METRICS_FILE}: fwt is {metrics.fwt}, which {MATRIX_FILE} rules out")


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _agree(have: float | list[float] | None, want: float | list[float] | None) -> bool:
    if have is None or want is None:
        return have is None and want is None
    if isinstance(want, list):
        return isinstance(have, list) and len(have) == len(want) and all(
            map(_agree, have, want))
    return math.isclose(have, want, abs_tol=1e-5)


# -- helpers -----------------------------------------------------------------------------------
def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunError(f"{path.name} is missing") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise RunError(f"{path.name} is not valid JSON ({err})") from None


def _object(data: Any, name: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise RunError(f"{name} is not a JSON object")
    return data


def _get(obj: dict[str, Any], key: str, kind: type | tuple[type, ...], name: str) -> Any:
    if key not in obj:
        raise RunError(f"{name}: missing key {key!r}")
    value = obj[key]
    # bool is an int subclass: keep a count of `true` out.
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise RunError(f"{name}: {key!r} has the wrong type ({value!r})")
    return value


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _count(obj: dict[str, Any], key: str) -> int | None:
    value = obj.get(key)  # absent from runs made before it was recorded
    if value is not None and (not isinstance(value, int) or isinstance(value, bool)
                              or value < 0):
        raise RunError(f"{METRICS_FILE}: {key!r} is {value!r}, not a count")
    return value


def _number(obj: dict[str, Any], key: str, optional: bool = False) -> float | None:
    if key not in obj:
        raise RunError(f"{METRICS_FILE}: missing key {key!r}")
    value = obj[key]
    if optional and value is None:
        return None
    if not _finite(value):
        raise RunError(f"{METRICS_FILE}: {key!r} is {value!r}, not a finite number")
    return float(value)
