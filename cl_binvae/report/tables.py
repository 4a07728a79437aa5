"""Load finished benchmark runs and tabulate them as ``mean ± sd (n)`` over seeds.

A results root holds one folder per run, as written by ``benchmarks/run.py`` and read through
:mod:`cl_binvae.suite.rundir`. Unfinished, damaged or unreadable folders are reported through a
callback and left out, never averaged in. Methods are named and ordered as the registry
(:mod:`cl_binvae.suite.registry`) and the run's settings say.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from cl_binvae.suite.atomic import write_text
from cl_binvae.suite.config import StreamConfig
from cl_binvae.suite.presets import protocol_for
from cl_binvae.suite.run_config import REPLAY_RECORD, RunConfig
from cl_binvae.suite.rundir import (
    FOOTPRINT_KEYS,
    Notify,
    RunDirectory,
    RunError,
    RunMetrics,
    RunRecord,
    UnknownMethod,
)

#: Table metrics, in column order, with their display names.
TABLE_METRICS = {
    "final_avg_accuracy": "Final avg. accuracy",
    "avg_forgetting": "Avg. forgetting",
    "bwt": "BWT",
}

#: What runs record of the trained strategy's memory, with the compute table's column names.
FOOTPRINT_COLUMNS = {key: key.replace("_", " ").capitalize() for key in FOOTPRINT_KEYS}


class ResultsError(Exception):
    """A results root cannot be tabulated at all (missing, or with no finished run)."""


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
        """Human-readable name that states any change of the preset: CUT to fewer iterations
        or experiences, EXTENDED to more."""
        title = f"{self.stream} / {self.scenario} / {self.preset} preset"
        own = {"iterations per experience": protocol_for(self.preset, self.stream).iterations,
               "experiences": StreamConfig(self.stream).experiences}
        changes = [f"{'CUT' if value < own[what] else 'EXTENDED'} to {value} {what}"
                   for what, value in (("iterations per experience", self.iterations),
                                       ("experiences", self.n_experiences))
                   if value is not None]
        return ", ".join([title, *changes])

    @property
    def sort_key(self) -> tuple:
        """Order of tables: by stream, scenario and preset, uncut before cut."""
        return (self.stream, self.scenario, self.preset,
                self.iterations or 0, self.n_experiences or 0)


@dataclass(frozen=True, eq=False)  # eq would compare the matrices elementwise
class Run:
    """One finished run: its record, metrics and accuracy matrix."""

    path: Path
    record: RunRecord
    metrics: RunMetrics
    matrix: np.ndarray  # T x T (row i: after experience i); 1 x T for joint

    @property
    def config(self) -> RunConfig:
        """The run's settings."""
        return self.record.run

    @property
    def group(self) -> Group:
        """The table this run belongs to."""
        run = self.config
        return Group(run.stream, run.scenario, run.preset, run.iterations, run.n_experiences)

    @property
    def method(self) -> str:
        """The table row this run belongs to (``RunConfig.method``)."""
        return self.config.method

    @property
    def seed(self) -> int:
        """The run's seed."""
        return self.config.seed

    @property
    def joint(self) -> bool:
        """Trained on all experiences at once (no accuracy per step, no forgetting)."""
        return self.config.method_record.joint

    @property
    def n_experiences(self) -> int:
        """T, the number of experiences of the stream."""
        return self.matrix.shape[1]


def load_run(folder: Path) -> Run:
    """Load one finished run folder, or raise ``RunError`` saying what is wrong with it."""
    record, metrics, matrix = RunDirectory(folder).read_finished()
    return Run(folder, record, metrics, matrix)


def load_runs(roots: Sequence[Path], report: Notify) -> list[Run]:
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
        n_finished, unknown = 0, Counter()
        for folder in sorted(root.iterdir()):
            if not folder.is_dir():
                if folder.is_symlink():
                    report(f"skipping {folder}: a symbolic link that loops or leads nowhere")
                continue
            try:
                run = load_run(folder)
            except UnknownMethod as err:  # said once for them all, below
                unknown[err.method] += 1
                continue
            except (RunError, OSError) as err:  # OSError: a folder we may not read
                report(f"skipping {folder}: {err}")
                continue
            n_finished += 1
            key = (run.group, run.method, run.seed)
            if key in runs:
                report(f"skipping {folder}: same method and seed as {runs[key].path}")
                continue
            runs[key] = run
        if unknown:
            methods = ", ".join(f"{name} ({n} runs)" for name, n in sorted(unknown.items()))
            line = (f"runs of methods not registered here: {methods}; give the file that "
                    "registers them with --import")
            if n_finished == 0:
                raise ResultsError(f"runs root {root} holds no finished run but {line}")
            report(f"skipping {root}'s {line}")
        if n_finished == 0:
            raise ResultsError(f"runs root {root} holds no finished run")
    return sorted(runs.values(),
                  key=lambda run: (run.group.sort_key, run.config.table_key, run.seed))


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


def summary_table(runs: Sequence[Run]) -> pd.DataFrame:
    """One row per (group, method), with ``<metric>_mean/_sd/_n`` columns."""
    rows = []
    for group, members in by_group(runs).items():
        for method, method_runs in by_method(members).items():
            row = {**_group_columns(group), "method": method}
            for metric in TABLE_METRICS:
                mean, sd, n = mean_sd(getattr(run.metrics, metric) for run in method_runs)
                row |= {f"{metric}_mean": mean, f"{metric}_sd": sd, f"{metric}_n": n}
            rows.append(row)
    return pd.DataFrame(rows)


def _group_columns(group: Group) -> dict:
    return {"stream": group.stream, "scenario": group.scenario, "preset": group.preset,
            "iterations_override": group.iterations,
            "n_experiences_override": group.n_experiences}


def runs_index(runs: Sequence[Run]) -> pd.DataFrame:
    """One row per included run: its settings, metrics and folder."""
    index = pd.DataFrame([
        {
            "run_id": run.record.run_id, **_group_columns(run.group),
            "strategy": run.config.strategy,
            **{key: run.config.to_dict()[key] for key in REPLAY_RECORD},
            "seed": run.seed, "method": run.method, "n_experiences": run.n_experiences,
            **{key: getattr(run.metrics, key) for key in
               ("final_avg_accuracy", "avg_forgetting", "bwt", "fwt", "wall_clock_s",
                *FOOTPRINT_COLUMNS)},
            "git_commit": run.record.git_commit, "path": str(run.path),
        }
        for run in runs
    ])
    return index.astype({key: "Int64" for key in FOOTPRINT_COLUMNS}) if len(index) else index


def paired_differences(runs: Sequence[Run]) -> pd.DataFrame:
    """Each configuration of a method that takes r, at any r, against its r = 0 twin
    (``r_baseline``, e.g. dgr) under the same settings and against its plain twin (r = 0,
    default prior and replay settings), unless the twin is that configuration itself: so a
    binarized row meets r = 0, and an r = 0 row under the fitted prior meets N(0, I). Also
    each method that ``extends`` another against it under their shared settings. Final
    accuracy differences paired by seed, with their mean, sample sd and 95% t-interval. Runs
    of one group; rows in table order."""
    from scipy import stats

    finals = {(run.method, run.seed): run.metrics.final_avg_accuracy for run in runs}
    rows = []
    for method, members in by_method(runs).items():
        config = members[0].config
        twins = [config.extended_twin]
        if config.method_record.takes_r:
            twins = [config.r_zero_twin, config.plain_twin, *twins]
        baselines = []
        for twin in twins:
            try:
                baselines.append(twin().method)
            except ValueError:  # no such twin, or it cannot take these settings
                continue
        for baseline in dict.fromkeys(baselines):
            if baseline == method:  # a plain r = 0 row is its own twin
                continue
            seeds = [run.seed for run in members if (baseline, run.seed) in finals]
            diffs = np.array([finals[method, s] - finals[baseline, s] for s in seeds])
            if len(diffs) == 0:
                continue
            mean, sd, n = mean_sd(diffs)
            half = stats.t.ppf(0.975, n - 1) * sd / math.sqrt(n) if n > 1 else math.nan
            rows.append({"method": method, "baseline": baseline, "diff_mean": mean,
                         "diff_sd": sd, "ci95_low": mean - half, "ci95_high": mean + half,
                         "n": n})
    return pd.DataFrame(rows, columns=["method", "baseline", "diff_mean", "diff_sd",
                                       "ci95_low", "ci95_high", "n"])


def paired_markdown(paired: pd.DataFrame) -> str:
    """The paired differences as a Markdown section (percentage points)."""
    def cell(row: dict) -> str:
        if row["n"] < 2:
            return f"{100 * row['diff_mean']:+.2f} (1)"
        return (f"{100 * row['diff_mean']:+.2f} [{100 * row['ci95_low']:+.2f}, "
                f"{100 * row['ci95_high']:+.2f}] ({row['n']})")

    shown = pd.DataFrame({"Method": paired["method"], "minus": paired["baseline"],
                          "Difference, pp [95% CI] (n seeds)":
                          [cell(row) for row in paired.to_dict("records")]})
    body = shown.to_markdown(index=False, tablefmt="pipe", colalign=("left", "left", "right"))
    return ("\n### Paired differences in final average accuracy\n\nBy seed, in percentage "
            "points; the interval is the 95% t-interval of the mean difference.\n\n"
            f"{body}\n")


def format_cell(mean: float, sd: float, n: int, pm: str = "±", missing: str = "–") -> str:
    """``mean ± sd (n)`` in percent with two decimals; the sd is left out when n = 1."""
    if n == 0:
        return missing
    spread = f" {pm} {100 * sd:.2f}" if n > 1 else ""
    return f"{100 * mean:.2f}{spread} ({n})"


def _display(table: pd.DataFrame) -> pd.DataFrame:
    """The table as shown: one row per method, ``mean ± sd (n)`` cells in percent."""
    return pd.DataFrame(
        [[row["method"], *(format_cell(row[f"{m}_mean"], row[f"{m}_sd"], row[f"{m}_n"])
                           for m in TABLE_METRICS)] for row in table.to_dict("records")],
        columns=["Method", *(f"{name} (%)" for name in TABLE_METRICS.values())])


def to_markdown(table: pd.DataFrame, title: str) -> str:
    """A summary table of one group as a Markdown section."""
    body = _display(table).to_markdown(index=False, tablefmt="pipe",
                                       colalign=("left", *("right",) * len(TABLE_METRICS)))
    return f"## {title}\n\nmean ± sd (n) over seeds\n\n{body}\n"


def to_latex(table: pd.DataFrame, title: str) -> str:
    """A summary table of one group as a booktabs LaTeX table (UTF-8 source: the ± and –
    signs need LaTeX 2018 or later, or \\usepackage[utf8]{inputenc})."""
    caption = re.sub(r"([_%&#$])", r"\\\1", title)  # pandas escapes cells, not the caption
    body = _display(table).to_latex(index=False, escape=True,
                                    column_format="l" + "r" * len(TABLE_METRICS),
                                    caption=f"{caption}: mean ± sd (n) over seeds.",
                                    position="t")
    return "% requires \\usepackage{booktabs}\n" + body


#: Generator diagnostics after the last experience shown per method (``diagnostics.csv``).
GENERATOR_COLUMNS = {"recon": "recon (nats)", "kl": "KL_r (nats)", "active_units": "active units",
                     "iw_ll": "IW log-lik. under its prior (nats)",
                     "replay_balance": "replay balance"}


def generator_summary(runs: Sequence[Run], report: Notify) -> pd.DataFrame:
    """Per generator method of one group: the mean over seeds of its diagnostics after the
    last experience (``GENERATOR_COLUMNS``; absent ones stay empty), and n."""
    rows = []
    for method, members in by_method(runs).items():
        if not members[0].config.method_record.replays:
            continue
        frame = _last_diagnostics(members, report)
        if len(frame):
            rows.append({"method": method, "n": len(frame),
                         **{key: frame[key].mean() if key in frame else math.nan
                            for key in GENERATOR_COLUMNS}})
    return pd.DataFrame(rows, columns=["method", "n", *GENERATOR_COLUMNS])


def method_diagnostics(runs: Sequence[Run], report: Notify) -> pd.DataFrame:
    """Per method of one group that diagnoses itself (``Method.diagnose``, such as the
    generative classifier's accuracy at each S): the mean over seeds of every column of its
    last diagnostics row, and n."""
    rows = []
    for method, members in by_method(runs).items():
        if members[0].config.method_record.diagnose is None:
            continue
        frame = _last_diagnostics(members, report)
        if len(frame):
            rows.append({"method": method, "n": len(frame),
                         **frame.drop(columns="experience", errors="ignore").mean().to_dict()})
    return pd.DataFrame(rows)


def _last_diagnostics(members: Sequence[Run], report: Notify) -> pd.DataFrame:
    """The last row of each run's ``diagnostics.csv``, one row per run that has one."""
    lasts = []
    for run in members:
        try:
            lasts.append(RunDirectory(run.path).read_diagnostics().iloc[-1])
        except (RunError, IndexError) as err:
            report(f"{run.path}: no diagnostics to summarize ({err})")
    return pd.DataFrame(lasts)


def generator_markdown(summary: pd.DataFrame, title: str) -> str:
    """The generator summary as a Markdown section."""
    shown = summary.rename(columns={"method": "Method", **GENERATOR_COLUMNS})
    shown = shown.astype(object).where(shown.notna(), None)  # absent: "–", not "nan"
    body = shown.to_markdown(index=False, tablefmt="pipe", floatfmt=".2f", missingval="–")
    return (f"## {title}: generators after the last experience\n\nMean over the n seeds "
            "of each run's diagnostics.csv on 1,000 test images of all experiences (replay "
            "balance: entropy of the replayed class shares over its maximum).\n\n"
            f"{body}\n")


def method_diagnostics_markdown(summary: pd.DataFrame, title: str) -> str:
    """The methods' own diagnostics as a Markdown section."""
    shown = summary.rename(columns={"method": "Method"})
    body = shown.to_markdown(index=False, tablefmt="pipe", floatfmt=".4f")
    return (f"## {title}: method diagnostics after the last experience\n\nMean over the n "
            "seeds of the last row of each run's diagnostics.csv (accuracy_S<k>: average "
            "accuracy over all experiences scored with the first k importance samples).\n\n"
            f"{body}\n")


def compute_table(runs: Sequence[Run]) -> pd.DataFrame:
    """Per method of one group: its wall clock per run (mean, sd, n over seeds) and what its
    trained strategy keeps (``FOOTPRINT_COLUMNS``: the largest any of its runs recorded;
    missing where none did, in runs made before they were recorded)."""
    rows = []
    for method, members in by_method(runs).items():
        mean, sd, n = mean_sd(run.metrics.wall_clock_s for run in members)
        row = {"method": method, "joint": members[0].joint, "wall_clock_s_mean": mean,
               "wall_clock_s_sd": sd, "wall_clock_s_n": n}
        for key in FOOTPRINT_COLUMNS:
            counts = [getattr(run.metrics, key) for run in members]
            row[key] = max((c for c in counts if c is not None), default=None)
        rows.append(row)
    return pd.DataFrame(rows).astype({key: "Int64" for key in FOOTPRINT_COLUMNS})


def compute_markdown(table: pd.DataFrame, title: str) -> str:
    """The compute table as a Markdown section (a joint run's stored samples: all data)."""
    def count(value: object) -> str:
        return "–" if pd.isna(value) else f"{int(value):,}"

    def minutes(row: dict) -> str:
        n = row["wall_clock_s_n"]
        spread = f" ± {row['wall_clock_s_sd'] / 60:.1f}" if n > 1 else ""
        return f"{row['wall_clock_s_mean'] / 60:.1f}{spread} ({n})"

    shown = pd.DataFrame(
        [[row["method"], minutes(row), count(row["model_parameters"]),
          count(row["extra_parameters"]),
          "all" if row["joint"] else count(row["stored_samples"])]
         for row in table.to_dict("records")],
        columns=["Method", "Wall clock per run (min)", *FOOTPRINT_COLUMNS.values()])
    body = shown.to_markdown(index=False, tablefmt="pipe", colalign=("left",) + ("right",) * 4)
    return (f"## {title}: compute\n\nWall clock: training and evaluation of one run, mean ± "
            "sd (n) over seeds, on the device each run records. Model parameters: the trained "
            "model's (the solver, or the generative classifier's VAEs); extra parameters: "
            "every other number the method keeps (generators, model copies, importances); "
            "stored samples: training examples kept. Counted by each run at its end; – "
            "where its runs predate the count.\n\n"
            f"{body}\n")


_README_BLOCK = re.compile(
    r"(<!-- table: (?P<path>\S+) -->\n)(?:(?!<!-- table: ).)*?(<!-- /table -->)", re.DOTALL)


def fill_readme(readme: Path, read_path: Callable[[Path], Path] = lambda path: path
                ) -> tuple[str, list[str]]:
    """``readme``'s text with every block between ``<!-- table: PATH -->`` and
    ``<!-- /table -->`` filled with the Markdown table at PATH (relative to the readme, read
    where ``read_path`` says: tables about to replace those there), without its heading, so
    that the tables a README shows are the generated ones; and the paths it filled.
    ``OSError`` for a table that is missing, ``ValueError`` where the markers do not pair
    up."""
    text = readme.read_text(encoding="utf-8")

    def table(match: re.Match) -> str:
        body = read_path(readme.parent / match["path"]).read_text(encoding="utf-8")
        body = body.split("\n", 1)[1].lstrip("\n") if body.startswith("## ") else body
        return match[1] + body + match[3]

    filled = [match["path"] for match in _README_BLOCK.finditer(text)]
    if not len(filled) == text.count("<!-- table: ") == text.count("<!-- /table -->"):
        raise ValueError(f"{readme}: every <!-- table: PATH --> needs its own <!-- /table --> "
                         "before the next block starts; nothing was filled")
    return _README_BLOCK.sub(table, text), filled


def write_tables(runs: Sequence[Run], out: Path, report: Notify = print) -> list[Path]:
    """Write ``runs_index.csv`` and, per group, ``table_<group>.{md,csv,tex}`` and
    ``compute_<group>.{csv,md}`` (wall clock and memory per method) into ``out``;
    where a group has binarized runs with twins, ``paired_<group>.csv`` too, and the paired
    differences close the group's Markdown table; where it has generator methods,
    ``generators_<group>.{md,csv}`` with their diagnostics after the last experience; where
    it has methods that diagnose themselves, ``diagnostics_<group>.{md,csv}`` (an earlier
    such file of a group that has no runs for it now is ``stale_files``).

    The output depends only on the runs (fixed float format, sorted rows), so re-running on
    the same runs gives byte-identical files. Each file is written atomically.
    """
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "runs_index.csv"]
    write_text(written[0], runs_index(runs).to_csv(index=False, float_format="%.6f"))
    for group, members in by_group(runs).items():
        table = summary_table(members)
        paths = [out / f"table_{group.slug}{suffix}" for suffix in (".csv", ".md", ".tex")]
        paired_path, *diagnosed = _optional_files(group, out)
        generator_paths, diagnostics_paths = diagnosed[:2], diagnosed[2:]
        paired = paired_differences(members)
        markdown = to_markdown(table, group.title)
        if len(paired):
            paths.append(paired_path)
            write_text(paired_path, paired.to_csv(index=False, float_format="%.6f"))
            markdown += paired_markdown(paired)
        generators = generator_summary(members, report)
        if len(generators):
            paths += generator_paths
            write_text(generator_paths[0], generators.to_csv(index=False, float_format="%.6f"))
            write_text(generator_paths[1], generator_markdown(generators, group.title))
        diagnostics = method_diagnostics(members, report)
        if len(diagnostics):
            paths += diagnostics_paths
            write_text(diagnostics_paths[0], diagnostics.to_csv(index=False,
                                                                float_format="%.6f"))
            write_text(diagnostics_paths[1], method_diagnostics_markdown(diagnostics,
                                                                         group.title))
        compute = compute_table(members)
        paths += [out / f"compute_{group.slug}{suffix}" for suffix in (".csv", ".md")]
        write_text(paths[-2], compute.to_csv(index=False, float_format="%.3f"))
        write_text(paths[-1], compute_markdown(compute, group.title))
        write_text(paths[0], table.to_csv(index=False, float_format="%.6f"))
        write_text(paths[1], markdown)
        write_text(paths[2], to_latex(table, group.title))
        written += paths
    return written


def stale_files(runs: Sequence[Run], out: Path, written: Iterable[Path]
                ) -> list[tuple[Path, str]]:
    """The files in ``out`` of an earlier run set that the tables ``written`` now leave out:
    a group's paired differences or diagnostics when it has no runs for them now (a group
    must not keep an earlier run set's file); each with the reason."""
    names = {path.name for path in written}
    return [(path, f"{group.title} has no runs for it now") for group in by_group(runs)
            for path in _optional_files(group, out) if path.name not in names and path.exists()]


def _optional_files(group: Group, out: Path) -> list[Path]:
    """A group's files that only some run sets have: paired differences, then generator and
    method diagnostics (.csv, .md)."""
    return [out / f"paired_{group.slug}.csv",
            *(out / f"{kind}_{group.slug}{suffix}"
              for kind in ("generators", "diagnostics") for suffix in (".csv", ".md"))]
