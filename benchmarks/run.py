"""Run continual-learning benchmarks: methods x r values x priors x seeds on one stream.

    python benchmarks/run.py --stream split_mnist --r 0.3
    python benchmarks/run.py --stream split_mnist --strategy binvae_gr --r 0 0.1 0.3 0.5 1 \\
        --seeds 0 1 2 3 4 --workers 2
    python benchmarks/run.py --import my_methods.py --strategy mine naive

Each run gets a directory under --out named by a hash of its configuration; a rerun skips
finished runs, resumes unfinished ones and reruns damaged ones. A run that fails on its own (a
NaN loss, a method that cannot be built) does not stop the others: it is reported, one line
each, at the end, and the exit code is 2. `python
benchmarks/make_tables.py` makes the tables.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import itertools
import os
import re
import socket
import sys
import time
import warnings
from pathlib import Path
from typing import Any

from cl_binvae.suite.cli import (
    OneLineParser,
    Terminated,
    check_device_name,
    check_writable,
    fail,
    import_methods,
    path_argument,
    quiet_dependency_warnings,
    resolve_device,
    resolve_import,
    sigterm_interrupts,
)
from cl_binvae.suite.config import LOGGERS, SCENARIOS, STREAMS
from cl_binvae.suite.presets import PRESETS
from cl_binvae.suite.registry import METHODS, Method, get_method, method_flags
from cl_binvae.suite.run_config import RunConfig
from cl_binvae.suite.settings import Flag

DEFAULT_STRATEGIES = ["naive", "dgr", "binvae_gr"]
PROG = "run.py"
RAY_TIMEOUT_S = 10.0


def import_user_methods(argv: list[str] | None) -> None:
    """Import the files and modules ``--import`` names, before the command line is parsed
    whole, so that the methods they register add their flags to it. ``ValueError`` for one
    that cannot be imported or registers nothing."""
    argv = sys.argv[1:] if argv is None else argv
    known, _ = _parser(with_methods=False, add_help=False).parse_known_args(argv)
    quiet_dependency_warnings()  # before --import: a user's file may import Avalanche
    import_methods(known.imports)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line, parsed and checked for form (no torch needed), with the flags of
    every registered method (import users' methods first: ``import_user_methods``)."""
    p = _parser(with_methods=True)
    args = p.parse_args(argv)
    for flag in ("workers", "threads"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            p.error(f"--{flag} must be >= 1, got {value}")
    cores = os.cpu_count() or 1
    if args.threads is not None and args.threads > 4 * cores:
        p.error(f"--threads {args.threads} is more than 4x this machine's {cores} cores (at "
                f"most {4 * cores})")
    try:
        check_device_name(args.device)
    except ValueError as err:
        p.error(str(err))
    if len(set(args.seeds)) != len(args.seeds):
        p.error(f"--seeds has duplicates: {args.seeds}")
    return args


def _parser(with_methods: bool, add_help: bool = True) -> argparse.ArgumentParser:
    """The driver's flags, and with ``with_methods`` those of every registered method."""
    methods = "; ".join(f"{m.name} ({m.description})" for m in METHODS.values())
    p = OneLineParser(prog=PROG, description=__doc__, add_help=add_help,
                      formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--stream", default="split_mnist", type=path_argument,
                   help=f"one of {', '.join(STREAMS)}, or a .npz file with x_train, y_train, "
                        "x_test, y_test (default: split_mnist)")
    p.add_argument("--strategy", nargs="+", default=DEFAULT_STRATEGIES, metavar="NAME",
                   help=f"registered methods: {methods}; add your own with --import "
                        f"(default: {' '.join(DEFAULT_STRATEGIES)})")
    p.add_argument("--import", dest="imports", nargs="+", default=[], metavar="FILE_OR_MODULE",
                   type=path_argument,
                   help="a .py file or module that registers methods with "
                        "@cl_binvae.register_method (see README)")
    p.add_argument("--scenario", nargs="+", default=["class"], choices=SCENARIOS,
                   help="task-, domain- or class-incremental (default: class)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="seeds (default: 0)")
    p.add_argument("--preset", default="paper", choices=PRESETS,
                   help="paper: the reference protocol; cpu: a protocol sized for a CPU; "
                        "quick: 300 iterations per experience, for smoke checks (see README; "
                        "default: paper)")
    p.add_argument("--iterations", type=int,
                   help="override the preset's iterations per experience (solver and generator)")
    p.add_argument("--n-experiences", type=int,
                   help="experiences in the stream (default: 5 split, 10 permuted)")
    p.add_argument("--logger", nargs="+", default=[], choices=list(LOGGERS),
                   help="Avalanche loggers for every run: text and csv (files in the run "
                        "directory), tensorboard, wandb (extras) (default: none)")
    p.add_argument("--device", default="auto",
                   help="auto (CUDA when present), cpu, cuda or cuda:N (default: auto)")
    p.add_argument("--data-root", type=path_argument,
                   help="folder with mnist.npz / cifar10.npz (default: $CL_BINVAE_DATA, else a "
                        "per-user cache, filled by a torchvision download when missing)")
    p.add_argument("--out", default="runs", type=path_argument,
                   help="folder for run directories (default: runs)")
    p.add_argument("--workers", type=int,
                   help="run in parallel on a local Ray with this many workers (needs the "
                        "'ray' extra)")
    p.add_argument("--ray-address", help="join an existing Ray cluster at this address")
    p.add_argument("--threads", type=int, help="torch CPU threads per run")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    if with_methods:
        group = p.add_argument_group("method settings (each applies to the methods that take "
                                     "it; several values sweep)")
        for flag in method_flags().values():
            _add_flag(group, flag)
    return p


def _add_flag(group: Any, flag: Flag) -> None:
    """``flag`` as an option of ``group``, its help naming the methods that take it and
    their defaults; unset (None) unless given."""
    takers = [m for m in METHODS.values() if flag.field in {f.field for f in m.flags}]
    defaults = {m.name: _shown(getattr(m.settings, flag.field)) for m in takers}
    if len(set(defaults.values())) == 1:
        default = next(iter(defaults.values()))
    else:
        default = ", ".join(f"{name} {value}" for name, value in defaults.items())
    help = f"{flag.help} ({', '.join(defaults)}; default: {default})"
    if flag.kind is bool:
        group.add_argument(flag.option, dest=flag.field, action=argparse.BooleanOptionalAction,
                           default=None, help=help)
    else:
        group.add_argument(flag.option, dest=flag.field, type=flag.kind, nargs="+",
                           choices=flag.choices, default=None, help=help)


def _shown(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def expand(args: argparse.Namespace) -> list[RunConfig]:
    """One RunConfig per (scenario, method, values of the method's settings, seed): each
    setting given applies to the methods that take it, the others keep their defaults.
    ``ValueError`` for a setting that none of the chosen methods takes."""
    methods = [get_method(name) for name in args.strategy]
    given = {name: getattr(args, name) for name in method_flags()
             if getattr(args, name, None) is not None}
    for name in given:
        if not any(name in {f.field for f in m.flags} for m in methods):
            takers = [m.name for m in METHODS.values()
                      if name in {f.field for f in m.flags}]
            raise ValueError(f"--{name.replace('_', '-')} applies to {', '.join(takers)}; "
                             f"none of --strategy {' '.join(args.strategy)} takes it")
    runs: dict[str, RunConfig] = {}
    for scenario, method in itertools.product(args.scenario, methods):
        for settings in _settings_sweep(method, given):
            for seed in args.seeds:
                run = RunConfig(stream=args.stream, scenario=scenario, strategy=method.name,
                                seed=seed, preset=args.preset, iterations=args.iterations,
                                n_experiences=args.n_experiences, settings=settings)
                runs.setdefault(run.run_id, run)
    return list(runs.values())


def _settings_sweep(method: Method, given: dict[str, Any]) -> list[Any]:
    """The method's settings for every combination of the values given for its flags."""
    if method.settings is None:
        return [None]
    names = [f.field for f in method.flags if f.field in given]
    values = [given[name] if isinstance(given[name], list) else [given[name]]
              for name in names]
    sweep = []
    for combo in itertools.product(*values):
        chosen = dict(zip(names, combo, strict=True))
        try:
            sweep.append(dataclasses.replace(method.settings, **chosen))
        except ValueError as err:  # name the settings: dgr, say, is at r = 0 whatever --r says
            shown = {**dataclasses.asdict(method.settings), **chosen}
            if "r" in shown and "prior" in shown:
                parts = [f"r = {shown['r']:g}", f"prior {shown['prior']}"]
            else:
                parts = [f"{name} {value}" for name, value in chosen.items()]
            raise ValueError(f"{method.name} ({', '.join(parts)}): {err}") from None
    return sweep


def check_ray_address(address: str) -> None:
    """``ValueError`` unless ``host:port`` answers within ``RAY_TIMEOUT_S`` as a Ray head
    does ('auto' passes): a port that is open but not Ray would have ``ray.init`` retry for
    ever. A Ray head (its GCS, or a Ray client server) speaks gRPC, so HTTP/2: sent the
    client's preface, it answers with a SETTINGS frame."""
    if address == "auto":
        return
    match = re.fullmatch(r"(?:ray://)?\[?([^\]]+?)\]?:(\d+)", address)
    if match is None:
        raise ValueError(f"--ray-address must be host:port, ray://host:port or auto, "
                         f"got {address!r}")
    deadline = time.monotonic() + RAY_TIMEOUT_S
    try:
        conn = socket.create_connection((match[1], int(match[2])), timeout=RAY_TIMEOUT_S)
    except OSError as exc:
        raise ValueError(f"--ray-address {address} does not answer within "
                         f"{RAY_TIMEOUT_S:g} s ({exc.strerror or exc})") from None
    header = b""
    with conn, contextlib.suppress(OSError):  # a reset or a timeout: no handshake
        conn.sendall(_HTTP2_PREFACE)
        while len(header) < 9 and (left := deadline - time.monotonic()) > 0:
            conn.settimeout(left)
            chunk = conn.recv(9 - len(header))
            if not chunk:
                break
            header += chunk
    if len(header) < 9 or header[3] != _SETTINGS or header[5:9] != bytes(4):
        raise ValueError(f"--ray-address {address} answers, but not as a Ray head (no gRPC "
                         f"handshake within {RAY_TIMEOUT_S:g} s)")


_SETTINGS = 0x4  # the HTTP/2 frame type a server's preface starts with
# The client's preface, then an empty SETTINGS frame: 3 bytes of length, type, flags, stream 0.
_HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes(3) + bytes([_SETTINGS]) + bytes(5)


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    try:
        import_user_methods(argv)
    except ValueError as exc:
        return fail(PROG, exc)
    args = parse_args(argv)
    try:
        runs = expand(args)
        if args.ray_address:
            check_ray_address(args.ray_address)
        from cl_binvae.suite.config import source_dataset
        from cl_binvae.suite.data import load_dataset
        from cl_binvae.suite.evaluation import check_loggers

        check_loggers(args.logger)
        load_dataset(source_dataset(args.stream), args.data_root)  # fail now, not mid-sweep
        from cl_binvae.suite.context import check_sweep_fits

        check_sweep_fits(runs, args.data_root)
        args.out = Path(args.out)
        check_writable(args.out, "--out")
        device = resolve_device(args.device)
        if args.threads is not None:
            import torch

            torch.set_num_threads(args.threads)
        parallel = args.workers is not None or args.ray_address is not None
        with sigterm_interrupts():  # SIGTERM, like Ctrl-C, keeps what is finished
            results = (_run_on_ray if parallel else _run_sequentially)(runs, args, device)
    except KeyboardInterrupt as interrupt:
        print(f"{PROG}: interrupted; finished experiences are kept: rerun the same command "
              "to resume", file=sys.stderr)
        return 143 if isinstance(interrupt, Terminated) else 130
    except MemoryError as exc:  # before any run: the data, or a stream to check
        return fail(PROG, f"out of memory before the first run ({_memory_error(exc)})")
    except (ValueError, OSError, ImportError) as exc:
        return fail(PROG, exc)
    print("\nFinal average accuracy, average forgetting and BWT (%), mean ± sd (n seeds):")
    print(summary(runs, results))
    print(f"\nRun directories are in {args.out}; tables: python benchmarks/make_tables.py "
          f"--runs {args.out}")
    from cl_binvae.suite.experiment import RunFailed

    failed = [(run, results[run.run_id]) for run in runs
              if isinstance(results.get(run.run_id), RunFailed)]
    for run, failure in failed:
        fail(PROG, f"{_named(run)}: {failure} "
                   f"({len(failed)} of {len(runs)} runs failed; the others ran)")
    return 2 if failed else 0


# -- running -----------------------------------------------------------------------------------
def _execute(run: RunConfig, out: str | Path, data_root: str | None, device: str,
             progress: bool, loggers: list[str]) -> Any:
    """``execute_run``'s metrics (None: another driver holds the run), or the ``RunFailed``
    of a run that failed on its own, returned so that the sweep goes on (and Ray hands it
    back as a value, not as its own error)."""
    from cl_binvae.suite.experiment import (
        OutOfResources,
        RunFailed,
        execute_run,
        out_of_resources,
    )

    try:
        return execute_run(run, out, data_root, device, progress=progress, loggers=loggers)
    except RunFailed as exc:
        return exc
    except Exception as exc:
        if not out_of_resources(exc):
            raise
        # The machine's limit, which the next run would meet too: the sweep stops here.
        what = " ".join(str(exc).split()) if isinstance(exc, OSError) else \
            f"out of memory ({_memory_error(exc)}); run fewer workers or threads, or a " \
            "smaller stream"
        raise OutOfResources(f"{_named(run)}: {what}") from None


def _memory_error(exc: BaseException) -> str:
    first = str(exc).strip().splitlines()[:1]
    return ": ".join([type(exc).__name__, *first])


def _named(run: RunConfig) -> str:
    """A run as the driver's lines name it."""
    return f"{run.scenario}-IL {run.method} seed {run.seed}"


def _run_sequentially(runs: list[RunConfig], args: argparse.Namespace,
                      device: str) -> dict[str, Any]:
    from cl_binvae.suite.experiment import RunFailed, finished_metrics

    results = {}
    for k, run in enumerate(runs, 1):
        state = "done already" if finished_metrics(run, args.out) else "running"
        print(f"[{k}/{len(runs)}] {_named(run)}: {state}", flush=True)
        results[run.run_id] = result = _execute(run, args.out, args.data_root, device,
                                                not args.no_progress, args.logger)
        if isinstance(result, RunFailed):
            print(f"[{k}/{len(runs)}] failed: {result}", flush=True)
    return results


def _execute_in_worker(run: RunConfig, out: str, data_root: str | None, device: str,
                       threads: int, imports: list[str], loggers: list[str]) -> Any:
    import torch

    import_methods(imports)  # a worker is a fresh process: register the user's methods there
    torch.set_num_threads(threads)
    warnings.filterwarnings("ignore")
    return _execute(run, out, data_root, device, False, loggers)


def _run_on_ray(runs: list[RunConfig], args: argparse.Namespace,
                device: str) -> dict[str, Any]:
    """Each run is one Ray task (1 CPU, or 1 GPU on CUDA); results print as they finish."""
    try:
        import ray
    except ImportError as exc:
        raise ImportError("--workers/--ray-address need Ray: pip install 'cl_binvae[ray]'") \
            from exc
    from cl_binvae.suite.experiment import RunFailed

    if args.ray_address:
        ray.init(address=args.ray_address)
    else:
        ray.init(num_cpus=args.workers, include_dashboard=False, log_to_driver=False)
    try:
        task = ray.remote(num_cpus=1, num_gpus=1 if device.startswith("cuda") else 0)(
            _execute_in_worker)
        imports = [resolve_import(spec) for spec in args.imports]
        pending = {task.remote(run, str(Path(args.out).resolve()), args.data_root, device,
                               args.threads or 1, imports, args.logger): run for run in runs}
        results = {}
        while pending:
            [done], _ = ray.wait(list(pending), num_returns=1)
            run = pending.pop(done)
            try:
                results[run.run_id] = metrics = ray.get(done)
            except ray.exceptions.RayTaskError as err:
                # What the worker raised, without Ray's remote traceback around it: the
                # driver reports it in one line, as a sequential run would.
                raise err.cause from None
            if metrics is None:
                outcome = "skipped: another driver holds it"
            elif isinstance(metrics, RunFailed):
                outcome = f"failed: {metrics}"
            else:
                outcome = f"final accuracy {metrics.final_avg_accuracy:.3f}"
            print(f"[{len(results)}/{len(runs)}] {_named(run)}: {outcome}", flush=True)
        return results
    finally:
        ray.shutdown()


def summary(runs: list[RunConfig], results: dict[str, Any]) -> str:
    """Mean +- sd (n) over seeds of final accuracy, forgetting and BWT, per method."""
    from cl_binvae.report.tables import format_cell, mean_sd
    from cl_binvae.suite.rundir import RunMetrics

    header = ("scenario", "method", "final accuracy", "forgetting", "BWT")
    lines = [f"{header[0]:8}  {header[1]:24}  " + "  ".join(f"{h:>18}" for h in header[2:])]
    groups: dict[tuple[str, str], list[Any]] = {}
    for run in runs:
        if isinstance(results.get(run.run_id), RunMetrics):  # not held elsewhere, not failed
            groups.setdefault((run.scenario, run.method), []).append(results[run.run_id])
    for (scenario, method), metrics in groups.items():
        cells = [format_cell(*mean_sd(getattr(m, key) for m in metrics))
                 for key in ("final_avg_accuracy", "avg_forgetting", "bwt")]
        lines.append(f"{scenario:8}  {method:24}  " + "  ".join(f"{c:>18}" for c in cells))
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
