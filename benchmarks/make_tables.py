"""Tabulate finished benchmark runs: ``mean ± sd (n)`` over seeds, plus figures.

Usage::

    python benchmarks/make_tables.py [--runs ROOT [ROOT ...]] [--out DIR] [--no-figures]
                                     [--import FILE_OR_MODULE ...] [--readme FILE ...]
                                     [--published CSV]

Writes into ``--out`` (default ``results/``): ``runs_index.csv``; per (stream, scenario,
protocol) ``table_<stream>_<scenario>_<preset>[_it<N>][_T<N>].{md,csv,tex}`` (``_it``/``_T``:
cut to N iterations per experience / N experiences), ``paired_<...>.csv`` with the paired
differences of binarized runs against their twins (also closing the Markdown table),
``generators_<...>.{md,csv}`` with the generator diagnostics after the last experience,
``diagnostics_<...>.{md,csv}`` with the diagnostics of methods that make their own,
``compute_<...>.{md,csv}`` with each method's wall clock and what it keeps;
``overview.{md,csv}``: every method on every stream, beside the published values of
``--published`` (a CSV file: stream, scenario, method, final_avg_accuracy, source); and PNG
figures under ``figures/``. ``--readme`` fills that file's ``<!-- table: PATH -->``
blocks from the tables written. Every file is written aside first and all are swapped in
together at the end: Ctrl-C or SIGTERM leaves the previous tables whole, and no temporary
file. Unfinished, damaged or unreadable run folders are reported on stderr and left out;
runs of your own methods need the ``--import`` that registered them.
Exit status 2, with a one-line error, for bad arguments, an output folder that cannot be
written, or a runs root that is missing or holds no finished run.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from cl_binvae.suite.cli import (
    OneLineParser,
    Terminated,
    check_writable,
    fail,
    import_methods,
    path_argument,
    sigterm_interrupts,
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
    parser.add_argument("--published", type=_path, default=None, metavar="CSV",
                        help="published values to set beside ours in OUT/overview.md "
                             "(columns: stream, scenario, method, final_avg_accuracy, source)")
    parser.add_argument("--import", dest="imports", nargs="+", default=[],
                        metavar="FILE_OR_MODULE", type=path_argument,
                        help="files or modules that register your own methods (as for run.py)")
    args = parser.parse_args(argv)
    with sigterm_interrupts():  # SIGTERM, like Ctrl-C, drops the tables being written
        return _tabulate(args)


def _tabulate(args: argparse.Namespace) -> int:
    stage = None
    try:
        import_methods(args.imports)
        # Every output folder first: a bad one must fail before any table is rewritten.
        check_writable(args.out, "--out")
        if args.figures:
            check_writable(args.out / "figures", "the figures folder")
        from cl_binvae.report.overview import read_published, write_overview
        from cl_binvae.report.tables import (
            ResultsError,
            fill_readme,
            load_runs,
            stale_files,
            write_tables,
        )
        from cl_binvae.suite.atomic import remove_orphans
        from cl_binvae.suite.staging import remove_leftovers, staged

        # Read before any table is written: a malformed file fails alone.
        published = {} if args.published is None else read_published(args.published)
        try:
            runs = load_runs(args.runs, _report)
        except ResultsError as err:
            return fail(PROG, err)
        remove_leftovers(args.out)  # of a make_tables killed with -9
        for folder in (args.out, args.out / "figures"):
            if folder.is_dir():
                remove_orphans(folder, earlier=_written_here)
        # Everything is written aside, then swapped in at once: an interrupted or failed
        # make_tables leaves the previous tables whole.
        with staged(args.out) as stage:
            written = write_tables(runs, stage.folder, _report)
            written += write_overview(runs, published, stage.folder, _report)
            if args.figures:
                # Imported here so that tables alone do not pay for seaborn and matplotlib.
                from cl_binvae.report.figures import write_figures

                written += write_figures(runs, stage.folder / "figures", _report)
            stale = stale_files(runs, args.out, written)
            for path, _ in stale:
                stage.remove(path)
            filled = {}
            for readme in args.readme:
                text, filled[readme] = fill_readme(readme, stage.read_path)
                if text != readme.read_text(encoding="utf-8"):
                    stage.put(readme, text)
        for path, why in stale:
            _report(f"removed {path}: {why}")
        for readme, blocks in filled.items():
            print(f"{readme}: filled {len(blocks)} table blocks")
    except KeyboardInterrupt as interrupt:
        done = stage is not None and stage.committed
        print(f"{PROG}: interrupted; " + ("the new tables were all in place already" if done
                                          else "the previous tables are as they were"),
              file=sys.stderr)
        return 143 if isinstance(interrupt, Terminated) else 130
    except (ValueError, OSError) as err:
        return fail(PROG, err)
    print(f"{len(runs)} runs tabulated; wrote {len(written)} files to {args.out}")
    return 0


_TABLES = re.compile(r"(table|paired|generators|diagnostics)_.+\.(md|csv|tex)|runs_index\.csv|"
                     r".+\.png")


def _written_here(name: str) -> bool:
    """Whether make_tables writes a file called ``name`` in its output folders (for the
    temporary files of its earlier versions, named without the suite's mark)."""
    return _TABLES.fullmatch(name) is not None


if __name__ == "__main__":
    sys.exit(main())
