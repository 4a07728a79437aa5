"""Tabulate finished benchmark runs: ``mean ± sd (n)`` over seeds, plus figures.

Usage::

    python benchmarks/tabulate.py [--runs ROOT [ROOT ...]] [--out DIR] [--no-figures]

Writes into ``--out`` (default ``results/``): ``runs_index.csv``, per (stream, scenario, preset)
``table_<stream>_<scenario>_<preset>.{md,csv,tex}``, and the PNG figures under ``figures/``.
Unfinished or corrupt run folders are reported on stderr and left out. Exit status 2, with a
one-line error, for a runs root that is missing or holds no finished run.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cl_binvae.results import ResultsError, load_runs, write_tables


def _report(message: str) -> None:
    print(f"tabulate: {message}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, nargs="+", default=[Path("runs")],
                        help="results roots, one folder per run in each (default: runs)")
    parser.add_argument("--out", type=Path, default=Path("results"),
                        help="output folder (default: results)")
    parser.add_argument("--figures", action=argparse.BooleanOptionalAction, default=True,
                        help="also draw the figures into OUT/figures (default: yes)")
    args = parser.parse_args(argv)
    try:
        runs = load_runs(args.runs, _report)
    except ResultsError as err:
        _report(f"error: {err}")
        return 2
    written = write_tables(runs, args.out)
    if args.figures:
        # Imported here so that tables alone do not pay for seaborn and matplotlib.
        from cl_binvae.figures import write_figures

        written += write_figures(runs, args.out / "figures", _report)
    print(f"{len(runs)} runs tabulated; wrote {len(written)} files to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
