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
for --repeats rounds and each reports its median.

    python benchmarks/perf.py --iterations 300
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import functools
import math
import statistics
import sys
import tempfile
import time
import warnings

warnings.filterwarnings("ignore")

import torch
import torch.nn.functional as F
from avalanche.benchmarks.classic import SplitMNIST
from avalanche.training import GenerativeReplay, VAETraining
from avalanche.training.plugins import EvaluationPlugin, GenerativeReplayPlugin
from avalanche.training.plugins.evaluation import default_evaluator
from avalanche.training.supervised.strategy_wrappers import get_default_vae_logger
from torch import nn

from cl_binvae.data import export_torchvision_mnist, load_dataset
from cl_binvae.presets import protocol_for
from cl_binvae.regularizer import binarized_kl
from cl_binvae.replay import ReplayConfig
from cl_binvae.solvers import build_solver
from cl_binvae.strategy import BinVAEGenerativeReplay
from cl_binvae.streams import StreamConfig, build_stream
from cl_binvae.tensor_data import TensorBatches, dataset_tensors
from cl_binvae.vae import BaseVAE, build_vae

WARMUP_ITERATIONS = 20  # the first experience: just enough to have something to replay


def models(stream, r: float, device: str) -> tuple[nn.Module, BaseVAE]:
    torch.manual_seed(0)
    protocol = protocol_for("paper", "split_mnist")
    solver = build_solver(stream.input_shape, stream.n_outputs, 1, protocol.solver)
    vae = build_vae(stream.input_shape, dataclasses.replace(protocol.generator, r=r))
    return solver.to(device), vae.to(device)


def plain_loop(stream, iterations: int, r: float, device: str) -> float:
    """(a) Seconds for ``iterations`` replay iterations in plain PyTorch."""
    solver, vae = models(stream, r, device)
    frozen_solver = copy.deepcopy(solver).eval().requires_grad_(False)
    frozen_vae = copy.deepcopy(vae).eval().requires_grad_(False)
    x, y, _ = dataset_tensors(stream.benchmark.train_stream[1].dataset, device)
    old = torch.zeros(stream.n_outputs, dtype=torch.bool, device=device)
    old[stream.classes_per_experience[0]] = True
    opt_s = torch.optim.Adam(solver.parameters(), 1e-3)
    opt_g = torch.optim.Adam(vae.parameters(), 1e-3)
    _sync(device)
    start = time.perf_counter()
    for xb, yb in TensorBatches([x, y], 128, iterations=iterations):
        with torch.no_grad():
            xr = frozen_vae.sample(128)
            yr = frozen_solver(xr).masked_fill(~old, -math.inf).argmax(1)
        out = solver(torch.cat([xb, xr]))
        loss = 0.5 * F.cross_entropy(out[:128], yb) + 0.5 * F.cross_entropy(out[128:], yr)
        opt_s.zero_grad(set_to_none=True)
        loss.backward()
        opt_s.step()
    for (xb,) in TensorBatches([x], 128, iterations=iterations):
        loss = 0.5 * vae.loss(xb)["loss"] + 0.5 * vae.loss(frozen_vae.sample(128))["loss"]
        opt_g.zero_grad(set_to_none=True)
        loss.backward()
        opt_g.step()
    _sync(device)
    return time.perf_counter() - start


def ours(stream, iterations: int, r: float, device: str) -> float:
    """(b) Seconds for the second experience with BinVAEGenerativeReplay."""
    solver, vae = models(stream, r, device)
    strategy = BinVAEGenerativeReplay(
        model=solver, optimizer=torch.optim.Adam(solver.parameters(), 1e-3), generator=vae,
        replay=ReplayConfig(generator_iterations=WARMUP_ITERATIONS),
        train_iterations=WARMUP_ITERATIONS, device=device,
        evaluator=EvaluationPlugin(loggers=[]))
    strategy.train(stream.benchmark.train_stream[0])
    strategy.train_iterations = iterations
    strategy.replay_plugin.config = dataclasses.replace(strategy.replay_plugin.config,
                                                      generator_iterations=iterations)
    return _timed(lambda: strategy.train(stream.benchmark.train_stream[1]), device)


class AvalancheVAE(nn.Module):
    """Our VAE with the interface Avalanche's GenerativeReplay expects (``generate(n)``)."""

    def __init__(self, vae: BaseVAE) -> None:
        super().__init__()
        self.vae = vae

    def forward(self, x: torch.Tensor):
        return self.vae(x)

    def generate(self, n: int) -> torch.Tensor:
        return self.vae.sample(n)


def vae_criterion(vae: BaseVAE):
    """Our ELBO loss in Avalanche's ``criterion(x, forward_output)`` form."""
    def loss(x, output):
        logits, mu, logvar = output
        kl = binarized_kl(mu, logvar, vae.config.r).sum(1)
        return (vae.reconstruction_nll(x, logits) + kl).mean()
    return loss


def avalanche(stream, iterations: int, r: float, device: str,
              train_stream=None, defaults: bool = False) -> float:
    """(c) Seconds for the second experience with Avalanche's GenerativeReplay; ``defaults``
    gives solver and generator Avalanche's default evaluators instead of silent ones."""
    solver, vae = models(stream, r, device)
    common = {"device": device, "train_mb_size": 128, "eval_mb_size": 1000}
    generator = VAETraining(model=AvalancheVAE(vae),
                            optimizer=torch.optim.Adam(vae.parameters(), 1e-3),
                            criterion=vae_criterion(vae), plugins=[GenerativeReplayPlugin()],
                            evaluator=get_default_vae_logger() if defaults
                            else EvaluationPlugin(loggers=[]), **common)
    strategy = GenerativeReplay(model=solver,
                                optimizer=torch.optim.Adam(solver.parameters(), 1e-3),
                                generator_strategy=generator,
                                evaluator=default_evaluator() if defaults
                                else EvaluationPlugin(loggers=[]), **common)
    first, second = (train_stream or stream.benchmark.train_stream)[:2]
    # Avalanche counts epochs: cut the experiences to exactly N minibatches each.
    warm, timed = copy.copy(first), copy.copy(second)
    warm.dataset = first.dataset.subset(range(128 * WARMUP_ITERATIONS))
    copies = math.ceil(128 * iterations / len(second.dataset))
    timed.dataset = functools.reduce(lambda a, b: a.concat(b), [second.dataset] * copies) \
        .subset(range(128 * iterations))
    strategy.train(warm)
    return _timed(lambda: strategy.train(timed), device)


def avalanche_as_users_run_it(stream, iterations: int, r: float, device: str,
                              data_root: str | None = None) -> float:
    """(c') (c) on Avalanche's classic SplitMNIST with its default evaluator.

    Its inputs are normalized, which our Bernoulli VAE does not model: this case measures
    time only (the models do the same arithmetic on any values)."""
    with tempfile.TemporaryDirectory() as root:
        export_torchvision_mnist(load_dataset("mnist", data_root), root)
        classic = SplitMNIST(n_experiences=5, fixed_class_order=list(range(10)),
                             dataset_root=root)
        return avalanche(stream, iterations, r, device, classic.train_stream, defaults=True)


def _timed(fn, device: str) -> float:
    _sync(device)
    start = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - start


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--iterations", type=int, default=300)
    p.add_argument("--avalanche-iterations", type=int,
                   help="iterations for (c), which is slow (default: --iterations)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--r", type=float, default=0.3, help="r for the r > 0 case")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--data-root")
    p.add_argument("--threads", type=int)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    stream = build_stream(StreamConfig("split_mnist"), args.data_root)
    n_c = args.avalanche_iterations or args.iterations
    cases = [("(a) plain PyTorch loop", plain_loop, 0.0, args.iterations),
             ("(b) ours, r = 0", ours, 0.0, args.iterations),
             (f"(b) ours, r = {args.r:g}", ours, args.r, args.iterations),
             ("(c) Avalanche GenerativeReplay", avalanche, 0.0, n_c),
             ("(c') ... classic SplitMNIST, defaults",
              functools.partial(avalanche_as_users_run_it, data_root=args.data_root), 0.0, n_c)]
    print(f"device {args.device}, {torch.get_num_threads()} threads, torch {torch.__version__};"
          f" split-MNIST experience 2, MLP 2x400 solver, VAE 2x400 z=100, batch 128 + 128; "
          f"median of {args.repeats}")
    # Repeats interleave the cases, so slow drift in machine speed hits every case alike.
    samples: dict[str, list[float]] = {name: [] for name, *_ in cases}
    for rep in range(args.repeats):
        for name, fn, r, n in cases:
            samples[name].append(1000 * fn(stream, n, r, args.device) / n)
            print(f"repeat {rep + 1}: {name:40} {samples[name][-1]:8.2f} ms/iteration",
                  flush=True)
    ms = {name: statistics.median(values) for name, values in samples.items()}
    # Avalanche's default loggers bound stdout at import and print through any redirect:
    # repeat the measurements in one block.
    print("\nsummary (median of the repeats):")
    for name, value in ms.items():
        print(f"{name:40} {value:8.2f} ms/iteration  {1000 / value:7.1f} it/s")
    a, b0, br, c, c_users = ms.values()
    print(f"\non {args.device}:")
    print(f"(b) / (a)  = {b0 / a:5.2f}   target <= 1.5")
    print(f"(c) / (b)  = {c / b0:5.2f}   target >= 10")
    print(f"(c') / (b) = {c_users / b0:5.2f}   target >= 10")
    print(f"(b, r={args.r:g}) / (b, r=0) = {br / b0:5.3f}   target <= 1.02")
    return 0


if __name__ == "__main__":
    sys.exit(main())
