"""Representation benchmark: what does the binarization radius r do to a VAE's latent code?

For every dataset, VAE variant, radius r and seed this trains one generator (MLP VAE on MNIST,
conv VAE on CIFAR-10, Bernoulli likelihood) and scores it on test images with
``cl_binvae.model.diagnostics``, plus a linear probe of the class on the posterior means. Results go to
``--out`` (default ``results/representation/``):

- ``runs.csv``: one raw row per run, rewritten after every run, so a crash keeps what finished;
- ``summary.md``: mean +- sd per (dataset, variant, r), built from ``runs.csv``;
- ``raw/*.npz``: latents, reconstructions and prior samples of each first-seed run;
- figures (PNG) built from the raw files, and ``PROTOCOL.md`` recording exactly what ran.

Example: ``python benchmarks/representation.py --datasets mnist --r 0 1 --seeds 0 1``. This
file is the command line (flags are checked before torch is imported); each dataset's protocol
is in ``representation_protocol.py``, the training, scoring and writing in
``representation_runs.py``, beside it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from representation_protocol import PROTOCOLS, QUICK, RepresentationProtocol

from cl_binvae.model.config import VARIANTS, check_radius
from cl_binvae.suite.cli import OneLineParser, check_writable, fail, quiet_dependency_warnings

RADII = (0.0, 0.1, 0.3, 0.5, 1.0, 2.0)
PROG = "representation.py"




def _radius(text: str) -> float:
    try:
        return check_radius(float(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line flags; see ``--help``."""
    p = OneLineParser(prog=PROG, description=__doc__.split("\n\n")[0])
    p.add_argument("--datasets", nargs="+", choices=tuple(PROTOCOLS), default=list(PROTOCOLS))
    p.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    p.add_argument("--r", nargs="+", type=_radius, default=list(RADII),
                   help="binarization radii (>= 0)")
    p.add_argument("--seeds", nargs="+", type=int,
                   help="seeds (default: per dataset, see PROTOCOL.md)")
    p.add_argument("--epochs", type=int, help="training epochs (default: per dataset)")
    p.add_argument("--out", type=Path, default=Path("results/representation"))
    p.add_argument("--data-root", type=Path,
                   help="folder with mnist.npz and cifar10.npz (default: $CL_BINVAE_DATA)")
    p.add_argument("--threads", type=int, default=1, help="CPU threads (torch and BLAS)")
    p.add_argument("--quick", action="store_true",
                   help="tiny data, one epoch and one seed: a smoke test")
    args = p.parse_args(argv)
    if args.epochs is not None and args.epochs <= 0:
        p.error(f"--epochs must be > 0, got {args.epochs}")
    if args.threads <= 0:
        p.error(f"--threads must be > 0, got {args.threads}")
    return args


def protocol_for(dataset: str, args: argparse.Namespace) -> RepresentationProtocol:
    """The dataset's protocol with ``--quick``, ``--epochs`` and ``--seeds`` applied."""
    proto = PROTOCOLS[dataset]
    if args.quick:
        proto = replace(proto, **QUICK)
    if args.epochs is not None:
        proto = replace(proto, epochs=args.epochs)
    if args.seeds is not None:
        proto = replace(proto, seeds=tuple(args.seeds))
    return proto


# -- driver ------------------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; returns the exit code (2 for bad input, missing data or a bad --out)."""
    args = parse_args(argv)
    protocols = {name: protocol_for(name, args) for name in args.datasets}
    quiet_dependency_warnings()
    try:
        import representation_runs  # beside this script: torch, Avalanche, scikit-learn, seaborn

        # Everything is loaded first, so missing data fails in seconds rather than after an hour.
        splits = {name: representation_runs.load_splits(name, protocols[name], args.data_root)
                  for name in args.datasets}
        check_writable(args.out, "--out")
    except (ValueError, OSError) as exc:
        return fail(PROG, exc)
    representation_runs.run_all(args, protocols, splits)
    return 0


if __name__ == "__main__":
    sys.exit(main())
