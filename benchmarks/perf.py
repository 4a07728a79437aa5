"""Speed of one generative-replay experience, three ways, same models and the same work; of
the generative classifier's scoring; and how close both run to this machine's matmul rate.

(a) floor: a plain PyTorch loop doing exactly the replay step (solver on 128 real + 128
    replayed samples labelled by the frozen solver, then the generator on 128 real + 128 of
    its own replay), no Avalanche;
(b) ours: BinVAEGenerativeReplay (Avalanche strategy + plugin), r = 0 and r > 0;
(c) Avalanche's own GenerativeReplay, given the same solver and the same VAE and loss, on
    our tensor-backed stream with a silent evaluator;
(c') the same, as Avalanche users run it: its classic SplitMNIST (per-sample normalization)
    and its default evaluator (metrics and progress logging every iteration).

(d) the generative classifier's scoring: --scoring-images test images under one class's VAE
    (split-MNIST protocol, 784-85-85, z = 5) with --scoring-samples importance samples, in
    images x samples (decoder passes) per second;
(e) the same on split-CIFAR-10 test images under its protocol's conv VAE (15-30-60 channels,
    z = 100).

One "iteration" is one solver step plus one generator step. Each is timed on the second
experience of split-MNIST (replay on), after a short first experience; the cases take turns
for --repeats rounds and each reports its median. A ratio between two cases is the median over
rounds of that round's ratio (the two ran back to back, so slow drift in machine speed
cancels); the ratio of the medians is shown beside it. Targets are printed only for what the
project holds itself to ((b) / (a) and the cost of r); against Avalanche's GenerativeReplay,
at equal work both are bound by the same matrix multiplies, and the ratio is reported as it is.

For (b), (d) and (e) the achieved FLOP rate (the matrix multiplies' and convolutions' FLOPs, counted
by torch's FlopCounterMode, over the median time) is set against a plain float32 matrix
multiply of the cases' dominant shape, timed in the same run. The cases are in
``perf_cases.py``.

    python benchmarks/perf.py --iterations 300 --repeats 5 --out results/perf.txt
    python benchmarks/perf.py --device cuda
"""

from __future__ import annotations

import argparse
import datetime
import functools
import math
import shlex
import statistics
import sys
from pathlib import Path

from cl_binvae.suite.atomic import write_text
from cl_binvae.suite.cli import (
    OneLineParser,
    check_device_name,
    check_writable,
    fail,
    resolve_device,
)

PROG = "perf.py"
PLAIN = "(a) plain PyTorch loop"
OURS = "(b) ours, r = 0"
AVALANCHE = "(c) Avalanche GenerativeReplay"
AVALANCHE_AS_USED = "(c') ... classic SplitMNIST, defaults"
SCORING = "(d) generative classifier scoring"
SCORING_CONV = "(e) ... split-CIFAR-10, conv VAE"
SCORINGS = (SCORING, SCORING_CONV)


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
    p.add_argument("--scoring-images", type=int, default=200,
                   help="test images scored in case (d) (default: 200)")
    p.add_argument("--scoring-samples", type=int, default=1000,
                   help="importance samples per image in case (d) (default: 1000)")
    p.add_argument("--device", default="auto",
                   help="auto (CUDA when present), cpu, cuda or cuda:N (default: auto)")
    p.add_argument("--data-root", help="folder with mnist.npz (default: $CL_BINVAE_DATA)")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--out", type=Path,
                   help="also write the report (with command, date, commit and versions) here")
    args = p.parse_args(argv)
    for flag in ("iterations", "avalanche_iterations", "repeats", "threads", "scoring_images",
                 "scoring_samples"):
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
        if args.out is not None and args.out.is_dir():
            raise ValueError(f"--out {args.out} is a folder; give the report's file name")
        if args.out is not None:
            check_writable(args.out.parent, "the folder of --out")
        import perf_cases as case  # beside this script: imports torch and Avalanche
        import torch

        from cl_binvae.suite.environment import environment

        device = resolve_device(args.device)
        if args.threads:
            torch.set_num_threads(args.threads)
        stream = case.split_mnist(args.data_root)
        scored = {SCORING: stream, SCORING_CONV: case.split_cifar10(args.data_root)}
    except (ValueError, OSError) as err:
        return fail(PROG, err)
    n_c = args.avalanche_iterations or args.iterations
    cases = [(PLAIN, case.plain_loop, 0.0, args.iterations),
             (OURS, case.ours, 0.0, args.iterations),
             (ours_at(args.r), case.ours, args.r, args.iterations),
             (AVALANCHE, case.avalanche, 0.0, n_c),
             (AVALANCHE_AS_USED,
              functools.partial(case.avalanche_as_users_run_it, data_root=args.data_root),
              0.0, n_c)]
    header = (f"device {device}, {torch.get_num_threads()} threads, torch {torch.__version__}; "
              "split-MNIST experience 2, MLP 2x400 solver, VAE 2x400 z=100, batch 128 + 128; "
              f"median of {args.repeats}")
    print(header)
    # Repeats interleave the cases, so slow drift in machine speed hits every case alike.
    samples: dict[str, list[float]] = {name: [] for name, *_ in cases}
    samples.update({name: [] for name in SCORINGS})
    lines = []
    decodes = args.scoring_images * args.scoring_samples
    for rep in range(args.repeats):
        for name, fn, r, n in cases:
            samples[name].append(1000 * fn(stream, n, r, device) / n)
            lines.append(f"repeat {rep + 1}: {name:40} {samples[name][-1]:8.2f} ms/iteration")
            print(lines[-1], flush=True)
        for name, scored_stream in scored.items():
            seconds = case.scoring(scored_stream, args.scoring_images, args.scoring_samples,
                                   device)
            samples[name].append(decodes / seconds)
            lines.append(f"repeat {rep + 1}: {name:40} {samples[name][-1]:8.0f} "
                         "images x samples/s")
            print(lines[-1], flush=True)
    # FLOPs per unit of work, counted apart (the counter slows what it counts), and the
    # reference multiplies of the cases' dominant shapes.
    rates = {OURS: (case.replay_flops(stream, 0.0, device), (256, 784, 400)),
             **{name: (case.scoring_flops(scored_stream, device),
                       case.scoring_reference(scored_stream))
                for name, scored_stream in scored.items()}}
    reference = {name: case.matmul(*shape, device) for name, (_, shape) in rates.items()}
    table = summary(samples, device, args.r) + "\n\n" + flop_rates(samples, rates, reference)
    # Avalanche's default loggers bound stdout at import and print through any redirect:
    # the summary comes again in one block.
    print("\n" + table)
    if args.out is not None:
        env = environment(device)
        command = shlex.join(["python", "benchmarks/perf.py",
                              *(sys.argv[1:] if argv is None else argv)])
        when = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
        provenance = [f"command: {command}", f"date: {when}", f"commit: {env['git_commit']}",
                      f"versions: {env['versions']}", f"device: {env['device']}"]
        write_text(args.out, "\n".join([*provenance, header, *lines, "", table, ""]))
        print(f"wrote {args.out}")
    return 0


def ours_at(r: float) -> str:
    """The name of case (b) at radius ``r``."""
    return f"(b) ours, r = {r:g}"


def summary(samples: dict[str, list[float]], device: str, r: float) -> str:
    """Each case's median, then the ratios, with a target where the project holds one: the
    median of the per-repeat ratios, and the ratio of the medians. ``samples``: per repeat,
    ms/iteration by case name, and (d)'s and (e)'s images x samples per second."""
    ms = {name: statistics.median(values) for name, values in samples.items()
          if name not in SCORINGS}
    lines = ["summary (median of the repeats):"]
    lines += [f"{name:40} {value:8.2f} ms/iteration  {1000 / value:7.1f} it/s"
              for name, value in ms.items()]
    lines += [f"{name:40} {statistics.median(samples[name]):8.0f} images x samples/s"
              for name in SCORINGS if samples.get(name)]
    lines += ["", f"on {device}: ratio (median of the per-repeat ratios; ratio of the medians)"]
    for label, top, bottom, target in (("(b) / (a)", OURS, PLAIN, "target <= 1.5"),
                                       ("(c) / (b)", AVALANCHE, OURS, ""),
                                       ("(c') / (b)", AVALANCHE_AS_USED, OURS, ""),
                                       (f"(b, r={r:g}) / (b, r=0)", ours_at(r), OURS,
                                        "target <= 1.02")):
        paired = statistics.median(t / b for t, b in zip(samples[top], samples[bottom]))
        lines.append(f"{label:24} = {paired:6.3f}  ({ms[top] / ms[bottom]:6.3f})   "
                     f"{target}".rstrip())
    return "\n".join(lines)


def flop_rates(samples: dict[str, list[float]], rates: dict[str, tuple[float, tuple]],
               reference: dict[str, float]) -> str:
    """The achieved FLOP rate of (b), (d) and (e) against a plain multiply of their dominant
    shape. ``rates``: FLOPs per iteration of (b) and per image x sample of (d) and (e), with that
    shape (m, k, n); ``reference``: the multiply's FLOPs per second."""
    lines = [("achieved FLOP rate (matrix multiplies and convolutions, median time) against a "
              "plain float32 multiply timed in the same run:")]
    for name, (work, (m, k, n)) in rates.items():
        per_second = (work * 1000 / statistics.median(samples[name]) if name not in SCORINGS
                      else work * statistics.median(samples[name]))
        lines.append(f"{name:40} {per_second / 1e9:7.2f} GFLOP/s = "
                     f"{per_second / reference[name]:5.1%} of ({m}x{k}) @ ({k}x{n}) at "
                     f"{reference[name] / 1e9:.2f} GFLOP/s")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
