"""Tabulate finished benchmark runs: ``mean ± sd (n)`` over seeds, plus figures.

Usage::

    python benchmarks/make_tables.py [--runs ROOT [ROOT ...]] [--out DIR] [--no-figures]
                                     [--import FILE_OR_MODULE ...] [--readme FILE ...]

Writes into ``--out`` (default ``results/``): ``runs_index.csv``; per (stream, scenario,
protocol) ``table_<stream>_<scenario>_<preset>[_it<N>][_T<N>].{md,csv,tex}`` (``_it``/``_T``:
cut to N iterations per experience / N experiences), ``paired_<...>.csv`` with the paired
differences of binarized runs against their twins (also closing the Markdown table),
``generators_<...>.{md,csv}`` with the generator diagnostics after the last experience; and
PNG figures under ``figures/``. ``--readme`` fills that file's ``<!-- table: PATH -->``
blocks from the tables written. Every file is written atomically. Unfinished, damaged or
unreadable run folders are reported on stderr and left out; runs of your own methods need
the ``--import`` that registered them.
Exit status 2, with a one-line error, for bad arguments, an output folder that cannot be
written, or a runs root that is missing or holds no finished run.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cl_binvae.suite.cli import (
    OneLineParser,
    check_writable,
    fail,
    import_methods,
    path_argument,
)

PROG = "make_tables.py"


def _report(message: str) -> None:
    print(f"{PROG}: {message}", file=sys.stderr)


def _path(value: str) -> Path:
    return Path(path_argument(value))


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = OneLineParser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=_path, nargs="+", default=[Path("runs")],
                        help="results roots, one folder per run in each (default: runs)")
    parser.add_argument("--out", type=_path, default=Path("results"),
                        help="output folder (default: results)")
    parser.add_argument("--figures", action=argparse.BooleanOptionalAction, default=True,
                        help="also draw the figures into OUT/figures (default: yes)")
    parser.add_argument("--readme", type=_path, action="append", default=[],
                        help="also fill this README's <!-- table: PATH --> blocks with the "
                             "generated tables (may repeat)")
    parser.add_argument("--import", dest="imports", nargs="+", default=[],
                        metavar="FILE_OR_MODULE", type=path_argument,
                        help="files or modules that register your own methods (as for run.py)")
    args = parser.parse_args(argv)
    try:
        import_methods(args.imports)
        # Every output folder first: a bad one must fail before any table is rewritten.
        check_writable(args.out, "--out")
        if args.figures:
            check_writable(args.out / "figures", "the figures folder")
        from cl_binvae.report.tables import ResultsError, load_runs, refresh_readme, write_tables

        try:
            runs = load_runs(args.runs, _report)
        except ResultsError as err:
            return fail(PROG, err)
        written = write_tables(runs, args.out, _report)
        if args.figures:
            # Imported here so that tables alone do not pay for seaborn and matplotlib.
            from cl_binvae.report.figures import write_figures

            written += write_figures(runs, args.out / "figures", _report)
        for readme in args.readme:
            filled = refresh_readme(readme)
            print(f"{readme}: filled {len(filled)} table blocks")
    except (ValueError, OSError) as err:
        return fail(PROG, err)
    print(f"{len(runs)} runs tabulated; wrote {len(written)} files to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
