"""Load finished benchmark runs and tabulate them as ``mean ± sd (n)`` over seeds.

A results root holds one folder per run, as written by ``benchmarks/run.py``:
``config.json``, ``accuracy_matrix.csv`` and, written last, ``metrics.json``. A folder without
``metrics.json`` is unfinished; a folder with a missing, unparseable or inconsistent file is
corrupt. Both are reported through a callback and left out, never averaged in.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

Report = Callable[[str], None]

#: Table metrics, in column order, with their display names.
METRICS = {
    "final_avg_accuracy": "Final avg. accuracy",
    "avg_forgetting": "Avg. forgetting",
    "bwt": "BWT",
}
#: Row order of the strategies; unknown strategies go after these, joint (the upper bound) last.
STRATEGY_ORDER = ("naive", "er", "avalanche_gr", "dgr", "binvae_gr")
GENERATOR_STRATEGY = "binvae_gr"  # the only strategy whose radius r is part of the method name
JOINT = "joint"


class ResultsError(Exception):
    """A results root cannot be tabulated at all (missing, or with no finished run)."""


class RunError(ValueError):
    """One run folder is unfinished or corrupt; the message says what is wrong."""


@dataclass(frozen=True)
class Group:
    """Runs that share one table: a stream, a scenario and a protocol.

    The protocol is a preset plus any cut of it made on the command line (``--iterations``,
    ``--n-experiences``); cut runs never share a table with uncut ones, and the title says so.
    """

    stream: str
    scenario: str
    preset: str
    iterations: int | None = None  # override of the preset's iterations per experience
    n_experiences: int | None = None  # override of the stream's number of experiences

    @property
    def slug(self) -> str:
        """File-name stem, e.g. ``permuted_mnist_class_paper_it250``."""
        parts = [Path(self.stream).name.removesuffix(".npz"), self.scenario, self.preset]
        if self.iterations is not None:
            parts.append(f"it{self.iterations}")
        if self.n_experiences is not None:
            parts.append(f"T{self.n_experiences}")
        return re.sub(r"[^A-Za-z0-9.-]+", "_", "_".join(parts))

    @property
    def title(self) -> str:
        """Human-readable name that states any cut of the preset."""
        title = f"{self.stream} / {self.scenario} / {self.preset} preset"
        cuts = []
        if self.iterations is not None:
            cuts.append(f"{self.iterations} iterations per experience")
        if self.n_experiences is not None:
            cuts.append(f"{self.n_experiences} experiences")
        return f"{title}, CUT to {' and '.join(cuts)}" if cuts else title

    @property
    def sort_key(self) -> tuple:
        """Order of tables: by stream, scenario and preset, uncut before cut."""
        return (self.stream, self.scenario, self.preset,
                self.iterations or 0, self.n_experiences or 0)


@dataclass(frozen=True, eq=False)  # eq would compare the matrices elementwise
class Run:
    """One finished run: its configuration, accuracy matrix and summary metrics."""

    path: Path
    run_id: str
    strategy: str
    r: float
    distill: bool
    seed: int
    group: Group
    git_commit: str | None
    matrix: np.ndarray  # T x T (row i: after experience i); 1 x T for joint
    final_avg_accuracy: float
    avg_forgetting: float | None
    bwt: float | None
    fwt: float | None
    wall_clock_s: float
    avg_accuracy_per_step: tuple[float, ...] | None  # None for joint

    @property
    def n_experiences(self) -> int:
        """T, the number of experiences of the stream."""
        return self.matrix.shape[1]

    @property
    def method(self) -> str:
        """The table row this run belongs to (see ``method_name``)."""
        return method_name(self.strategy, self.r, self.distill)

    @property
    def method_key(self) -> tuple:
        """Sort key of ``method`` in table order (see ``method_sort_key``)."""
        return method_sort_key(self.strategy, self.r, self.distill)


def method_name(strategy: str, r: float, distill: bool) -> str:
    """``strategy``, plus `` r=<r>`` for binvae_gr, plus ``+distill`` when distilling."""
    name = f"{strategy} r={r:g}" if strategy == GENERATOR_STRATEGY else strategy
    return name + "+distill" if distill else name


def method_sort_key(strategy: str, r: float, distill: bool) -> tuple:
    """Sort key putting methods in table order (see ``STRATEGY_ORDER``), binvae_gr by r."""
    if strategy in STRATEGY_ORDER:
        rank = STRATEGY_ORDER.index(strategy)
    else:
        rank = len(STRATEGY_ORDER) + (strategy == JOINT)
    # r only orders binvae_gr: the method name ignores it for the other strategies.
    return rank, strategy, distill, r if strategy == GENERATOR_STRATEGY else 0.0


# ---------------------------------------------------------------- loading


def _get(obj: object, key: str, where: str) -> object:
    if not isinstance(obj, dict) or key not in obj:
        raise RunError(f"{where}: missing key {key!r}")
    return obj[key]


def _field(obj: object, key: str, kind: type | tuple[type, ...], where: str):
    value = _get(obj, key, where)
    # bool is an int subclass: keep a seed of `true` or a distill flag of 1 out.
    if not isinstance(value, kind) or isinstance(value, bool) != (kind is bool):
        raise RunError(f"{where}: {key!r} has the wrong type ({value!r})")
    return value


def _is_finite_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _number(obj: object, key: str, where: str, optional: bool = False) -> float | None:
    value = _get(obj, key, where)
    if optional and value is None:
        return None
    if not _is_finite_number(value):
        raise RunError(f"{where}: {key!r} is {value!r}, not a finite number")
    return float(value)


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunError(f"{path.name} is missing") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise RunError(f"{path.name} is not valid JSON ({err})") from None
    if not isinstance(data, dict):
        raise RunError(f"{path.name} is not a JSON object")
    return data


def _read_matrix(path: Path, n_experiences: int, joint: bool) -> np.ndarray:
    try:
        frame = pd.read_csv(path, dtype={"after": str})
        values = frame.drop(columns="after").to_numpy(dtype=float)
    except FileNotFoundError:
        raise RunError(f"{path.name} is missing") from None
    except (OSError, ValueError, KeyError) as err:  # pandas parse errors are ValueErrors
        raise RunError(f"{path.name} is unreadable ({err})") from None
    columns = [f"exp_{i}" for i in range(n_experiences)]
    rows = [JOINT] if joint else [str(i) for i in range(n_experiences)]
    if list(frame.columns[1:]) != columns or list(frame["after"]) != rows:
        raise RunError(
            f"{path.name} has shape {values.shape} (after={list(frame['after'])}), expected "
            f"{len(rows)} x {n_experiences} with after={rows}"
        )
    if not np.all(np.isfinite(values) & (values >= 0) & (values <= 1)):
        raise RunError(f"{path.name} has entries that are not accuracies in [0, 1]")
    return values


def _per_step(metrics: dict, n_experiences: int) -> tuple[float, ...]:
    per_step = _field(metrics, "avg_accuracy_per_step", list, "metrics.json")
    if len(per_step) != n_experiences or not all(map(_is_finite_number, per_step)):
        raise RunError(f"metrics.json: avg_accuracy_per_step is not {n_experiences} numbers")
    return tuple(map(float, per_step))


def load_run(folder: Path) -> Run:
    """Load one finished run folder, or raise ``RunError`` saying what is wrong with it."""
    if not (folder / "metrics.json").exists():
        raise RunError("unfinished (no metrics.json)")
    config = _read_json(folder / "config.json")
    metrics = _read_json(folder / "metrics.json")
    run = _field(config, "run", dict, "config.json")
    where = "config.json run"
    strategy = _field(run, "strategy", str, where)
    joint = strategy == JOINT
    n_experiences = _field(metrics, "n_experiences", int, "metrics.json")
    if n_experiences < 1:
        raise RunError(f"metrics.json: n_experiences is {n_experiences}")
    group = Group(
        stream=_field(run, "stream", str, where),
        scenario=_field(run, "scenario", str, where),
        preset=_field(run, "preset", str, where),
        iterations=_field(run, "iterations", (int, type(None)), where),
        n_experiences=_field(run, "n_experiences", (int, type(None)), where),
    )
    return Run(
        path=folder,
        run_id=_field(config, "run_id", str, "config.json"),
        strategy=strategy,
        r=_number(run, "r", where),
        distill=_field(run, "distill", bool, where),
        seed=_field(run, "seed", int, where),
        group=group,
        git_commit=config.get("git_commit"),
        matrix=_read_matrix(folder / "accuracy_matrix.csv", n_experiences, joint),
        final_avg_accuracy=_number(metrics, "final_avg_accuracy", "metrics.json"),
        avg_forgetting=_number(metrics, "avg_forgetting", "metrics.json", optional=True),
        bwt=_number(metrics, "bwt", "metrics.json", optional=True),
        fwt=_number(metrics, "fwt", "metrics.json", optional=True),
        wall_clock_s=_number(metrics, "wall_clock_s", "metrics.json"),
        avg_accuracy_per_step=None if joint else _per_step(metrics, n_experiences),
    )


def load_runs(roots: Sequence[Path], report: Report) -> list[Run]:
    """Load every run folder directly under each root, in table order.

    Unfinished, corrupt and duplicate run folders (a second run of the same method and seed,
    which would count one seed twice) are passed to ``report`` as one line each and left out.
    Raises ``ResultsError`` for a root that is missing or holds no finished run.
    """
    for root in roots:
        if not root.is_dir():
            raise ResultsError(f"runs root {root} does not exist or is not a folder")
    runs: dict[tuple, Run] = {}
    for root in roots:
        n_finished = 0
        for folder in sorted(p for p in root.iterdir() if p.is_dir()):
            try:
                run = load_run(folder)
            except RunError as err:
                report(f"skipping {folder}: {err}")
                continue
            n_finished += 1
            key = (run.group, run.method, run.seed)
            if key in runs:
                report(f"skipping {folder}: same method and seed as {runs[key].path}")
                continue
            runs[key] = run
        if n_finished == 0:
            raise ResultsError(f"runs root {root} holds no finished run")
    return sorted(runs.values(), key=lambda run: (run.group.sort_key, run.method_key, run.seed))


# ---------------------------------------------------------------- tabulating


def mean_sd(values: Iterable[float | None]) -> tuple[float, float, int]:
    """Mean, sample sd (ddof=1; NaN for fewer than two values) and count of the non-null values."""
    array = np.array([v for v in values if v is not None], dtype=float)
    n = len(array)
    mean = float(array.mean()) if n else math.nan
    sd = float(array.std(ddof=1)) if n > 1 else math.nan
    return mean, sd, n


def by_group(runs: Iterable[Run]) -> dict[Group, list[Run]]:
    """Runs split by group (one table each), in order of first appearance."""
    groups: dict[Group, list[Run]] = {}
    for run in runs:
        groups.setdefault(run.group, []).append(run)
    return groups


def by_method(runs: Iterable[Run]) -> dict[str, list[Run]]:
    """Runs (of one group) split by method, in order of first appearance."""
    methods: dict[str, list[Run]] = {}
    for run in runs:
        methods.setdefault(run.method, []).append(run)
    return methods


def summarize(runs: Sequence[Run]) -> pd.DataFrame:
    """One row per (group, method), with ``<metric>_mean/_sd/_n`` columns."""
    rows = []
    for group, members in by_group(runs).items():
        for method, method_runs in by_method(members).items():
            row = {**_group_columns(group), "method": method}
            for metric in METRICS:
                mean, sd, n = mean_sd(getattr(run, metric) for run in method_runs)
                row |= {f"{metric}_mean": mean, f"{metric}_sd": sd, f"{metric}_n": n}
            rows.append(row)
    return pd.DataFrame(rows)


def _group_columns(group: Group) -> dict:
    return {"stream": group.stream, "scenario": group.scenario, "preset": group.preset,
            "iterations_override": group.iterations,
            "n_experiences_override": group.n_experiences}


def runs_index(runs: Sequence[Run]) -> pd.DataFrame:
    """One row per included run: its configuration, metrics and folder."""
    return pd.DataFrame([
        {
            "run_id": run.run_id, **_group_columns(run.group),
            "strategy": run.strategy, "r": run.r, "distill": run.distill,
            "seed": run.seed, "method": run.method, "n_experiences": run.n_experiences,
            "final_avg_accuracy": run.final_avg_accuracy, "avg_forgetting": run.avg_forgetting,
            "bwt": run.bwt, "fwt": run.fwt, "wall_clock_s": run.wall_clock_s,
            "git_commit": run.git_commit, "path": str(run.path),
        }
        for run in runs
    ])


def format_cell(mean: float, sd: float, n: int, pm: str = "±", missing: str = "–") -> str:
    """``mean ± sd (n)`` in percent with two decimals; the sd is left out when n = 1."""
    if n == 0:
        return missing
    spread = f" {pm} {100 * sd:.2f}" if n > 1 else ""
    return f"{100 * mean:.2f}{spread} ({n})"


def _cells(table: pd.DataFrame, pm: str, missing: str) -> list[list[str]]:
    return [
        [row["method"]] + [
            format_cell(row[f"{m}_mean"], row[f"{m}_sd"], row[f"{m}_n"], pm, missing)
            for m in METRICS
        ]
        for row in table.to_dict("records")
    ]


def to_markdown(table: pd.DataFrame, title: str) -> str:
    """A summary table of one group as a Markdown section."""
    header = ["Method"] + [f"{name} (%)" for name in METRICS.values()]
    lines = [f"## {title}", "", "mean ± sd (n) over seeds", "",
             "| " + " | ".join(header) + " |", "|" + "---|" + "---:|" * len(METRICS)]
    lines += ["| " + " | ".join(cells) + " |" for cells in _cells(table, "±", "–")]
    return "\n".join(lines) + "\n"


def _latex_escape(text: str) -> str:
    return re.sub(r"([_%&#$])", r"\\\1", text)


def to_latex(table: pd.DataFrame, title: str) -> str:
    """A summary table of one group as a booktabs LaTeX table (hand-written: no jinja2)."""
    header = ["Method"] + [f"{name} (\\%)" for name in METRICS.values()]
    body = [
        " & ".join([_latex_escape(cells[0]), *cells[1:]]) + r" \\"
        for cells in _cells(table, r"$\pm$", "--")
    ]
    return "\n".join([
        r"% requires \usepackage{booktabs}",
        r"\begin{table}[t]",
        r"\centering",
        r"\begin{tabular}{l" + "r" * len(METRICS) + "}",
        r"\toprule",
        " & ".join(header) + r" \\",
        r"\midrule",
        *body,
        r"\bottomrule",
        r"\end{tabular}",
        rf"\caption{{{_latex_escape(title)}: mean $\pm$ sd (n) over seeds.}}",
        r"\end{table}",
    ]) + "\n"


def write_tables(runs: Sequence[Run], out: Path) -> list[Path]:
    """Write ``runs_index.csv`` and, per group, ``table_<group>.{md,csv,tex}`` into ``out``.

    The output depends only on the runs (fixed float format, sorted rows), so re-running on
    the same runs gives byte-identical files.
    """
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "runs_index.csv"]
    runs_index(runs).to_csv(written[0], index=False, float_format="%.6f")
    for group, members in by_group(runs).items():
        table = summarize(members)
        paths = [out / f"table_{group.slug}{suffix}" for suffix in (".csv", ".md", ".tex")]
        table.to_csv(paths[0], index=False, float_format="%.6f")
        paths[1].write_text(to_markdown(table, group.title), encoding="utf-8")
        paths[2].write_text(to_latex(table, group.title), encoding="utf-8")
        written += paths
    return written
