"""The timed cases of ``benchmarks/perf.py``: one generative-replay experience done four ways
on the same models, the generative classifier's scoring, and a plain matrix multiply as the
reference rate (see that script for what each measures). Each case returns the seconds its
timed work took; CUDA work is synchronized before the clock is read. ``flops`` counts the
floating-point operations of matrix multiplies and convolutions that a piece of work does.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import math
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
from torch.utils.flop_counter import FlopCounterMode

from cl_binvae.classifier.model import SAMPLE_CHUNK, SCORE_BATCH
from cl_binvae.methods.gen_classifier import protocol as classifier_protocol
from cl_binvae.model.likelihood import log_likelihood
from cl_binvae.model.regularizer import binarized_kl
from cl_binvae.model.vae import BaseVAE, build_vae
from cl_binvae.replay.plugin import ReplayConfig
from cl_binvae.replay.strategy import BinVAEGenerativeReplay
from cl_binvae.suite.data import export_torchvision_mnist, load_dataset
from cl_binvae.suite.presets import protocol_for
from cl_binvae.suite.solvers import build_solver
from cl_binvae.suite.streams import Stream, StreamConfig, build_stream
from cl_binvae.training.tensor_batches import TensorBatches, dataset_tensors

WARMUP_ITERATIONS = 20  # the first experience: just enough to have something to replay


def models(stream: Stream, r: float, device: str) -> tuple[nn.Module, BaseVAE]:
    """The split-MNIST paper preset's solver and VAE (at ``r``), seeded alike for every case."""
    torch.manual_seed(0)
    protocol = protocol_for("paper", "split_mnist")
    solver = build_solver(stream.input_shape, stream.n_outputs, 1, protocol.solver)
    vae = build_vae(stream.input_shape, dataclasses.replace(protocol.generator, r=r))
    return solver.to(device), vae.to(device)


def plain_loop(stream: Stream, iterations: int, r: float, device: str) -> float:
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


def ours(stream: Stream, iterations: int, r: float, device: str, timed: bool = True) -> float:
    """(b) Seconds for the second experience with BinVAEGenerativeReplay (``timed=False``:
    only the short first experience, to tell its work apart)."""
    solver, vae = models(stream, r, device)
    strategy = BinVAEGenerativeReplay(
        model=solver, optimizer=torch.optim.Adam(solver.parameters(), 1e-3), generator=vae,
        replay=ReplayConfig(generator_iterations=WARMUP_ITERATIONS),
        train_iterations=WARMUP_ITERATIONS, device=device,
        evaluator=EvaluationPlugin(loggers=[]))
    strategy.train(stream.benchmark.train_stream[0])
    if not timed:
        return 0.0
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


def avalanche(stream: Stream, iterations: int, r: float, device: str,
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


def avalanche_as_users_run_it(stream: Stream, iterations: int, r: float, device: str,
                              data_root: str | None = None) -> float:
    """(c') (c) on Avalanche's classic SplitMNIST with its default evaluator.

    Its inputs are normalized, which our Bernoulli VAE does not model: this case measures
    time only (the models do the same arithmetic on any values)."""
    with tempfile.TemporaryDirectory() as root:
        export_torchvision_mnist(load_dataset("mnist", data_root), root)
        classic = SplitMNIST(n_experiences=5, fixed_class_order=list(range(10)),
                             dataset_root=root)
        return avalanche(stream, iterations, r, device, classic.train_stream, defaults=True)


def scoring(stream: Stream, images: int, samples: int, device: str) -> float:
    """(d), (e) Seconds to score ``images`` test images of ``stream`` under one class's VAE
    of the generative classifier's protocol for that stream with ``samples`` importance
    samples, in the classifier's fixed layout."""
    vae, x = _scoring_setup(stream, images, device)
    return _timed(lambda: _score(vae, x, samples), device)


def scoring_flops(stream: Stream, device: str) -> float:
    """Matrix-multiply and convolution FLOPs of ``scoring`` per image and sample (counted on
    50 x 128)."""
    vae, x = _scoring_setup(stream, SCORE_BATCH, device)
    return flops(lambda: _score(vae, x, SAMPLE_CHUNK)) / (SCORE_BATCH * SAMPLE_CHUNK)


def scoring_reference(stream: Stream) -> tuple[int, int, int]:
    """The multiply (m, k, n) ``scoring`` is set against: its decoder's widest layer on one
    chunk of draws (for the conv VAE, the first transposed convolution as a multiply)."""
    decoded = SCORE_BATCH * SAMPLE_CHUNK
    config = classifier_protocol("paper", stream.config.name).vae
    if config.arch == "conv":  # (pixels, in channels) @ (in, out channels x 4 x 4 taps)
        pixels = math.prod(side // 2 ** len(config.channels) for side in stream.input_shape[1:])
        return decoded * pixels, config.channels[-1], config.channels[-2] * 16
    return decoded, config.hidden[-1], math.prod(stream.input_shape)


def replay_flops(stream: Stream, r: float, device: str, iterations: int = 10) -> float:
    """Matrix-multiply FLOPs of case (b) per iteration (counted on ``iterations``, less the
    short first experience)."""
    total = flops(lambda: ours(stream, iterations, r, device))
    return (total - flops(lambda: ours(stream, 0, r, device, timed=False))) / iterations


def flops(fn) -> int:
    """The FLOPs of the matrix multiplies and convolutions ``fn`` runs (forward and backward)."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def matmul(m: int, k: int, n: int, device: str, seconds: float = 1.0) -> float:
    """FLOPs per second of a plain float32 (m x k) @ (k x n) multiply, repeated for about
    ``seconds``: the rate this machine reaches on the work the cases are made of."""
    a = torch.randn(m, k, device=device)
    b = torch.randn(k, n, device=device)
    a @ b  # warm up
    reps, elapsed = 0, 0.0
    while elapsed < seconds:
        elapsed += _timed(lambda: a @ b, device)
        reps += 1
    return 2 * m * k * n * reps / elapsed


def _scoring_setup(stream: Stream, images: int, device: str) -> tuple[BaseVAE, torch.Tensor]:
    torch.manual_seed(0)
    vae = build_vae(stream.input_shape, classifier_protocol("paper", stream.config.name).vae)
    x, _, _ = dataset_tensors(stream.benchmark.test_stream[0].dataset, device)
    return vae.to(device).eval(), x[:images]


def _score(vae: BaseVAE, x: torch.Tensor, samples: int) -> torch.Tensor:
    return log_likelihood(vae, x, samples, batch_size=SCORE_BATCH,
                          max_decodes=SCORE_BATCH * SAMPLE_CHUNK,
                          rng=torch.Generator(x.device).manual_seed(0))


def _timed(fn, device: str) -> float:
    _sync(device)
    start = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - start


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def split_mnist(data_root: str | None) -> Stream:
    """The split-MNIST stream every case trains on."""
    return build_stream(StreamConfig("split_mnist"), data_root)


def split_cifar10(data_root: str | None) -> Stream:
    """The split-CIFAR-10 stream whose test images case (e) scores."""
    return build_stream(StreamConfig("split_cifar10"), data_root)
