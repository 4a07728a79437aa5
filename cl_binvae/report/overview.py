"""One table across streams: every method's final accuracy in each protocol's table, with the
published value beside it where the literature has one.

Published values are data, kept in a CSV file (``results/published.csv``) with the columns
``PUBLISHED_COLUMNS``: the stream, scenario and method label as this suite's tables name
them (``dgr``, ``dgr+distill``, ``gen_classifier r=0``), the final average accuracy in
percent, and where it was published. A cell is marked ``*`` where the published value lies
outside our mean ± one sd: the README says why for each.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from cl_binvae.report.tables import Run, by_group, by_method, format_cell, mean_sd
from cl_binvae.suite.atomic import write_text
from cl_binvae.suite.rundir import Notify

PUBLISHED_COLUMNS = ("stream", "scenario", "method", "final_avg_accuracy", "source")
#: A method enters the overview from a table where it has at least this many seeds (single
#: seeds are exploration).
MIN_SEEDS = 2


@dataclass(frozen=True)
class Published:
    """One published final average accuracy (percent) and where it was published."""

    accuracy: float
    source: str


def read_published(path: Path) -> dict[tuple[str, str, str], Published]:
    """The published values in ``path`` by (stream, scenario, method label); ``ValueError``
    naming the file (and line) for a file that is not UTF-8 CSV, a header or row that is not
    as ``PUBLISHED_COLUMNS`` say, an accuracy outside [0, 100], or a key given twice."""
    values: dict[tuple[str, str, str], Published] = {}
    try:
        with open(path, encoding="utf-8-sig", newline="") as file:
            rows = csv.reader(file)
            if tuple(next(rows, ())) != PUBLISHED_COLUMNS:
                raise ValueError(f"{path}: the header must be {','.join(PUBLISHED_COLUMNS)}")
            for row in rows:
                where = f"{path}:{rows.line_num}"
                if len(row) != len(PUBLISHED_COLUMNS) or not all(c.strip() for c in row):
                    raise ValueError(f"{where}: a row needs all of "
                                     f"{', '.join(PUBLISHED_COLUMNS)}")
                stream, scenario, method, accuracy, source = (c.strip() for c in row)
                try:
                    value = float(accuracy)
                except ValueError:
                    value = math.nan
                if not 0 <= value <= 100:
                    raise ValueError(f"{where}: accuracy {accuracy!r} is not a percentage")
                if (stream, scenario, method) in values:
                    raise ValueError(f"{where}: {stream} {scenario} {method} is given twice")
                values[stream, scenario, method] = Published(value, source)
    except (UnicodeDecodeError, csv.Error) as err:
        raise ValueError(f"{path}: not a UTF-8 CSV file ({err})") from None
    return values


def overview_table(runs: Sequence[Run], published: dict[tuple[str, str, str], Published]
                   ) -> pd.DataFrame:
    """One row per (table, method) with at least ``MIN_SEEDS`` seeds, from the tables of
    whole protocols (cut or extended ones are left out): its final accuracy over seeds and
    the published value of its stream, scenario and method, if any."""
    rows = []
    for group, members in sorted(by_group(runs).items(), key=lambda item: item[0].sort_key):
        if group.iterations is not None or group.n_experiences is not None:
            continue
        for method, method_runs in by_method(members).items():
            mean, sd, n = mean_sd(run.metrics.final_avg_accuracy for run in method_runs)
            if n < MIN_SEEDS:
                continue
            known = published.get((group.stream, group.scenario, method))
            rows.append({"order": method_runs[0].config.table_key,
                         "table": group.slug, "title": group.title, "stream": group.stream,
                         "scenario": group.scenario, "method": method,
                         "mean": mean, "sd": sd, "n": n,
                         "published": None if known is None else known.accuracy,
                         "source": None if known is None else known.source})
    return pd.DataFrame(rows, columns=["order", "table", "title", "stream", "scenario",
                                       "method", "mean", "sd", "n", "published", "source"])


def overview_markdown(table: pd.DataFrame) -> str:
    """The overview as a Markdown section: methods down, tables across, ``*`` where the
    published value lies outside our mean ± sd; the sources below."""
    heading = "## Overview: final average accuracy (%) on every stream\n\n"
    if table.empty:  # a pilot's single seeds, say: a sentence, not a table with no rows
        return (f"{heading}No method has {MIN_SEEDS} seeds or more in a table of a whole "
                "protocol yet.\n")
    titles = list(dict.fromkeys(table["title"]))
    cells: dict[str, dict[str, str]] = {}
    for row in sorted(table.to_dict("records"), key=lambda row: row["order"]):
        cell = format_cell(row["mean"], row["sd"], row["n"])
        if not pd.isna(row["published"]):
            off = abs(100 * row["mean"] - row["published"]) > 100 * row["sd"]
            cell += f" [{row['published']:.1f}{'*' if off else ''}]"
        cells.setdefault(row["method"], {})[row["title"]] = cell
    shown = pd.DataFrame([[method, *(by_title.get(title, "") for title in titles)]
                          for method, by_title in cells.items()],
                         columns=["Method", *titles])
    body = shown.to_markdown(index=False, tablefmt="pipe",
                             colalign=("left",) + ("right",) * len(titles))
    sources = sorted({(row["method"], f"{row['stream']} / {row['scenario']}",
                       row["published"], row["source"]) for row in table.to_dict("records")
                      if not pd.isna(row["published"])})
    notes = "".join(f"- {method} on {where}: {value:.1f}, {source}\n"
                    for method, where, value, source in sources)
    return (f"{heading}mean ± sd (n) over seeds, methods with at least {MIN_SEEDS} seeds; "
            "[published value], * where it lies outside our mean ± sd.\n\n"
            f"{body}\n" + (f"\nPublished:\n\n{notes}" if notes else ""))


def write_overview(runs: Sequence[Run], published: dict[tuple[str, str, str], Published],
                   out: Path, report: Notify) -> list[Path]:
    """Write ``overview.csv`` and ``overview.md`` into ``out``; the paths written. A
    published value that no row of the overview takes (a misspelt method label, a stream
    not run) is reported."""
    table = overview_table(runs, published)
    taken = set(zip(table["stream"], table["scenario"], table["method"], strict=True))
    for stream, scenario, method in sorted(set(published) - taken):
        report(f"published {stream} {scenario} {method}: no table of the overview has that "
               "row")
    paths = [out / "overview.csv", out / "overview.md"]
    write_text(paths[0], table.drop(columns="order").to_csv(index=False, float_format="%.6f"))
    write_text(paths[1], overview_markdown(table))
    return paths
