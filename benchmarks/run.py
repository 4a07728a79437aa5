"""Run continual-learning benchmarks: strategies x r values x seeds on one stream.

    python benchmarks/run.py --stream split_mnist --r 0.3
    python benchmarks/run.py --stream split_mnist --strategy binvae_gr --r 0 0.1 0.3 0.5 1 \\
        --seeds 0 1 2 3 4 --workers 2

Each run gets a directory under --out named by a hash of its configuration; a rerun skips
finished runs and resumes unfinished ones. `python benchmarks/tabulate.py` makes the tables.
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any, NoReturn

# Python puts this script's folder first on sys.path, where benchmarks/tabulate.py would
# shadow the `tabulate` package that torch imports; this script needs nothing from there.
sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent.resolve()]


def quiet_dependency_warnings() -> None:
    """Hide Avalanche's and qpsolvers' warnings (deprecations, optional backends): they force
    their own filters, so drop them at display time; other warnings still show."""
    show = warnings.showwarning

    def showwarning(message, category, filename, lineno, file=None, line=None):
        if not any(f"{os.sep}{pkg}{os.sep}" in filename for pkg in ("avalanche", "qpsolvers")):
            show(message, category, filename, lineno, file, line)

    warnings.showwarning = showwarning


quiet_dependency_warnings()

import torch

from cl_binvae.data import load_dataset
from cl_binvae.experiment import execute_run, is_finished
from cl_binvae.presets import GENERATIVE, PRESETS, STRATEGIES, RunConfig
from cl_binvae.priors import PRIORS
from cl_binvae.replay import REPLAY_LABELS
from cl_binvae.results import format_cell, mean_sd
from cl_binvae.streams import SCENARIOS, STREAMS, source_dataset

DEFAULT_STRATEGIES = ["naive", "dgr", "binvae_gr"]
PRIOR_NAMES = tuple(PRIORS)


class OneLineParser(argparse.ArgumentParser):
    """Bad arguments: one line on stderr and exit code 2, without the usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = OneLineParser(prog="run.py", description=__doc__,
                      formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--stream", default="split_mnist",
                   help=f"one of {', '.join(STREAMS)}, or a .npz file with x_train, y_train, "
                        "x_test, y_test (default: split_mnist)")
    p.add_argument("--r", type=float, nargs="+", default=[0.3],
                   help="binarization radius r >= 0 for binvae_gr; several values sweep "
                        "(default: 0.3)")
    p.add_argument("--strategy", nargs="+", default=DEFAULT_STRATEGIES, choices=STRATEGIES,
                   metavar="NAME",
                   help="naive (fine-tuning, lower bound), joint (upper bound), er (Avalanche "
                        "replay buffer, 100 per class), avalanche_gr (Avalanche's "
                        "GenerativeReplay), dgr (our plugin, r=0), binvae_gr (our plugin with "
                        f"--r) (default: {' '.join(DEFAULT_STRATEGIES)})")
    p.add_argument("--scenario", nargs="+", default=["class"], choices=SCENARIOS,
                   help="task-, domain- or class-incremental (default: class)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="seeds (default: 0)")
    p.add_argument("--preset", default="paper", choices=PRESETS,
                   help="paper: the reference protocol (see README); quick: 300 iterations "
                        "per experience, for smoke checks (default: paper)")
    p.add_argument("--distill", action="store_true",
                   help="dgr/binvae_gr: replay soft targets at temperature 2, not hard labels")
    p.add_argument("--prior", nargs="+", default=["mixture"], choices=PRIOR_NAMES,
                   help="dgr/binvae_gr: the latent prior replay samples from: mixture (fair-sign "
                        "0.5 N(r,1) + 0.5 N(-r,1)), standard (N(0, I)), fitted (a Gaussian "
                        "mixture fitted after each experience), codes (a binary code per "
                        "class); several values sweep (default: mixture)")
    p.add_argument("--prior-components", type=int, default=20, metavar="K",
                   help="components of the fitted prior (default: 20)")
    p.add_argument("--replay-labels", default="solver", choices=REPLAY_LABELS,
                   help="label replay by the frozen solver, or (--prior codes) by the class "
                        "the prior drew (default: solver)")
    p.add_argument("--active-classes", action="store_true",
                   help="class-IL, dgr/binvae_gr: current and replay losses over the classes "
                        "seen so far only (van de Ven et al.)")
    p.add_argument("--iterations", type=int,
                   help="override the preset's iterations per experience (solver and generator)")
    p.add_argument("--n-experiences", type=int,
                   help="experiences in the stream (default: 5 split, 10 permuted)")
    p.add_argument("--device", default="auto",
                   help="auto (CUDA when present), cpu, cuda or cuda:N (default: auto)")
    p.add_argument("--data-root",
                   help="folder with mnist.npz / cifar10.npz (default: $CL_BINVAE_DATA, else a "
                        "per-user cache, filled by a torchvision download when missing)")
    p.add_argument("--out", default="runs", help="folder for run directories (default: runs)")
    p.add_argument("--workers", type=int,
                   help="run in parallel on a local Ray with this many workers (needs the "
                        "'ray' extra)")
    p.add_argument("--ray-address", help="join an existing Ray cluster at this address")
    p.add_argument("--threads", type=int, help="torch CPU threads per run")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p.parse_args(argv)


def expand(args: argparse.Namespace) -> list[RunConfig]:
    """One RunConfig per (scenario, strategy, r, prior, seed); r applies to binvae_gr only,
    the prior and replay settings to dgr and binvae_gr."""
    if len(set(args.seeds)) != len(args.seeds):
        raise ValueError(f"--seeds has duplicates: {args.seeds}")
    for flag in ("workers", "threads"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            raise ValueError(f"--{flag} must be >= 1, got {value}")
    runs: dict[str, RunConfig] = {}
    for scenario, strategy, r, prior, seed in itertools.product(
            args.scenario, args.strategy, args.r, args.prior, args.seeds):
        generative = strategy in GENERATIVE
        run = RunConfig(stream=args.stream, scenario=scenario, strategy=strategy,
                        r=r if strategy == "binvae_gr" else 0.0, seed=seed,
                        preset=args.preset, distill=args.distill and generative,
                        iterations=args.iterations, n_experiences=args.n_experiences,
                        prior=prior if generative else "mixture",
                        prior_components=args.prior_components,
                        replay_labels=args.replay_labels if generative else "solver",
                        active_classes=args.active_classes and generative)
        runs.setdefault(run.run_id, run)
    return list(runs.values())


def resolve_device(name: str) -> str:
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        raise ValueError(f"--device must be auto, cpu, cuda or cuda:N, got {name!r}")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: CUDA is not available here; use --device cpu")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise ValueError(f"--device {name}: this machine has {torch.cuda.device_count()} GPUs")
    return name


def check_writable(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=folder).close()
    except OSError as exc:
        raise OSError(f"cannot write to --out {folder}: {exc.strerror or exc}") from exc


def run_sequentially(runs: list[RunConfig], args: argparse.Namespace,
                     device: str) -> dict[str, dict[str, Any]]:
    results = {}
    for k, run in enumerate(runs, 1):
        state = "done already" if is_finished(run, args.out) else "running"
        print(f"[{k}/{len(runs)}] {run.scenario}-IL {run.method} seed {run.seed}: {state}",
              flush=True)
        results[run.run_id] = execute_run(run, args.out, args.data_root, device,
                                          progress=not args.no_progress)
    return results


def _execute_in_worker(run: RunConfig, out: str, data_root: str | None, device: str,
                       threads: int) -> dict[str, Any]:
    torch.set_num_threads(threads)
    warnings.filterwarnings("ignore")
    return execute_run(run, out, data_root, device, progress=False)


def run_on_ray(runs: list[RunConfig], args: argparse.Namespace,
               device: str) -> dict[str, dict[str, Any]]:
    """Each run is one Ray task (1 CPU, or 1 GPU on CUDA); results print as they finish."""
    try:
        import ray
    except ImportError as exc:
        raise ImportError("--workers/--ray-address need Ray: pip install 'cl_binvae[ray]'") \
            from exc
    if args.ray_address:
        ray.init(address=args.ray_address)
    else:
        ray.init(num_cpus=args.workers, include_dashboard=False, log_to_driver=False)
    try:
        task = ray.remote(num_cpus=1, num_gpus=1 if device.startswith("cuda") else 0)(
            _execute_in_worker)
        pending = {task.remote(run, str(Path(args.out).resolve()), args.data_root, device,
                               args.threads or 1): run for run in runs}
        results = {}
        while pending:
            [done], _ = ray.wait(list(pending), num_returns=1)
            run = pending.pop(done)
            results[run.run_id] = ray.get(done)
            print(f"[{len(results)}/{len(runs)}] {run.scenario}-IL {run.method} seed "
                  f"{run.seed}: final accuracy {results[run.run_id]['final_avg_accuracy']:.3f}",
                  flush=True)
        return results
    finally:
        ray.shutdown()


def summary(runs: list[RunConfig], results: dict[str, dict[str, Any]]) -> str:
    """Mean +- sd (n) over seeds of final accuracy, forgetting and BWT, per method."""
    header = ("scenario", "method", "final accuracy", "forgetting", "BWT")
    lines = [f"{header[0]:8}  {header[1]:24}  " + "  ".join(f"{h:>18}" for h in header[2:])]
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for run in runs:
        groups.setdefault((run.scenario, run.method), []).append(results[run.run_id])
    for (scenario, method), metrics in groups.items():
        cells = [format_cell(*mean_sd(m[key] for m in metrics))
                 for key in ("final_avg_accuracy", "avg_forgetting", "bwt")]
        lines.append(f"{scenario:8}  {method:24}  " + "  ".join(f"{c:>18}" for c in cells))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        runs = expand(args)
        device = resolve_device(args.device)
        if args.threads is not None:
            torch.set_num_threads(args.threads)
        load_dataset(source_dataset(args.stream), args.data_root)  # fail now, not mid-sweep
        args.out = Path(args.out)
        check_writable(args.out)
        parallel = args.workers is not None or args.ray_address is not None
        results = (run_on_ray if parallel else run_sequentially)(runs, args, device)
    except KeyboardInterrupt:
        print("run.py: interrupted; finished experiences are kept: rerun the same command "
              "to resume", file=sys.stderr)
        return 130
    except (ValueError, OSError, ImportError, FloatingPointError) as exc:
        print(f"run.py: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    print("\nFinal average accuracy, average forgetting and BWT (%), mean ± sd (n seeds):")
    print(summary(runs, results))
    print(f"\nRun directories are in {args.out}; tables: python benchmarks/tabulate.py "
          f"--runs {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
