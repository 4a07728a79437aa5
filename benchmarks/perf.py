"""Speed of one generative-replay experience, three ways, same models and the same work.

(a) floor: a plain PyTorch loop doing exactly the replay step (solver on 128 real + 128
    replayed samples labelled by the frozen solver, then the generator on 128 real + 128 of
    its own replay), no Avalanche;
(b) ours: BinVAEGenerativeReplay (Avalanche strategy + plugin), r = 0 and r > 0;
(c) Avalanche's own GenerativeReplay, given the same solver and the same VAE and loss, on
    our tensor-backed stream with a silent evaluator;
(c') the same, as Avalanche users run it: its classic SplitMNIST (per-sample normalization)
    and its default evaluator (metrics and progress logging every iteration).

One "iteration" is one solver step plus one generator step. Each is timed on the second
experience of split-MNIST (replay on), after a short first experience; the cases take turns
for --repeats rounds and each reports its median. The cases are in ``perf_cases.py``.

    python benchmarks/perf.py --iterations 300 --repeats 5
    python benchmarks/perf.py --device cuda
"""

from __future__ import annotations

import argparse
import functools
import math
import statistics
import sys

from cl_binvae.cli import OneLineParser, check_device_name, fail, resolve_device

PROG = "perf.py"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line, parsed and checked (no torch needed)."""
    p = OneLineParser(prog=PROG, description=__doc__,
                      formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--iterations", type=int, default=300,
                   help="timed iterations per case (default: 300)")
    p.add_argument("--avalanche-iterations", type=int,
                   help="iterations for (c) and (c'), which are slow (default: --iterations)")
    p.add_argument("--repeats", type=int, default=3,
                   help="rounds of all cases; each reports its median (default: 3)")
    p.add_argument("--r", type=float, default=0.3, help="r for the r > 0 case (default: 0.3)")
    p.add_argument("--device", default="auto",
                   help="auto (CUDA when present), cpu, cuda or cuda:N (default: auto)")
    p.add_argument("--data-root", help="folder with mnist.npz (default: $CL_BINVAE_DATA)")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    args = p.parse_args(argv)
    for flag in ("iterations", "avalanche_iterations", "repeats", "threads"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            p.error(f"--{flag.replace('_', '-')} must be >= 1, got {value}")
    if not (math.isfinite(args.r) and args.r > 0):
        p.error(f"--r must be a finite number > 0 (the r > 0 case), got {args.r}")
    try:
        check_device_name(args.device)
    except ValueError as err:
        p.error(str(err))
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = parse_args(argv)
    try:
        import perf_cases as case  # beside this script: imports torch and Avalanche
        import torch

        device = resolve_device(args.device)
        if args.threads:
            torch.set_num_threads(args.threads)
        stream = case.split_mnist(args.data_root)
    except (ValueError, OSError) as err:
        return fail(PROG, err)
    n_c = args.avalanche_iterations or args.iterations
    cases = [("(a) plain PyTorch loop", case.plain_loop, 0.0, args.iterations),
             ("(b) ours, r = 0", case.ours, 0.0, args.iterations),
             (f"(b) ours, r = {args.r:g}", case.ours, args.r, args.iterations),
             ("(c) Avalanche GenerativeReplay", case.avalanche, 0.0, n_c),
             ("(c') ... classic SplitMNIST, defaults",
              functools.partial(case.avalanche_as_users_run_it, data_root=args.data_root),
              0.0, n_c)]
    print(f"device {device}, {torch.get_num_threads()} threads, torch {torch.__version__};"
          f" split-MNIST experience 2, MLP 2x400 solver, VAE 2x400 z=100, batch 128 + 128; "
          f"median of {args.repeats}")
    # Repeats interleave the cases, so slow drift in machine speed hits every case alike.
    samples: dict[str, list[float]] = {name: [] for name, *_ in cases}
    for rep in range(args.repeats):
        for name, fn, r, n in cases:
            samples[name].append(1000 * fn(stream, n, r, device) / n)
            print(f"repeat {rep + 1}: {name:40} {samples[name][-1]:8.2f} ms/iteration",
                  flush=True)
    ms = {name: statistics.median(values) for name, values in samples.items()}
    # Avalanche's default loggers bound stdout at import and print through any redirect:
    # repeat the measurements in one block.
    print("\nsummary (median of the repeats):")
    for name, value in ms.items():
        print(f"{name:40} {value:8.2f} ms/iteration  {1000 / value:7.1f} it/s")
    a, b0, br, c, c_users = ms.values()
    print(f"\non {device}:")
    print(f"(b) / (a)  = {b0 / a:5.2f}   target <= 1.5")
    print(f"(c) / (b)  = {c / b0:5.2f}   target >= 10")
    print(f"(c') / (b) = {c_users / b0:5.2f}   target >= 10")
    print(f"(b, r={args.r:g}) / (b, r=0) = {br / b0:5.3f}   target <= 1.02")
    return 0


if __name__ == "__main__":
    sys.exit(main())
