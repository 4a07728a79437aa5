"""Execute one run: build the stream and strategy, train experience by experience, evaluate,
checkpoint, and write the run directory.

A run directory holds ``config.json``, ``accuracy_matrix.csv``, ``diagnostics.csv`` and
``samples_exp{i}.png`` (generator strategies), and ``metrics.json``, written last: a directory
without it is unfinished. ``progress.pt`` holds the state after the last finished experience,
so a rerun resumes there; it is removed when the run finishes.
"""

from __future__ import annotations

import copy
import functools
import json
import os
import platform
import random
import re
import subprocess
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torchvision
from avalanche.core import SupervisedPlugin
from avalanche.evaluation.metrics import accuracy_metrics
from avalanche.models import MlpVAE, VAE_loss
from avalanche.training import GenerativeReplay, VAETraining
from avalanche.training.plugins import EvaluationPlugin, GenerativeReplayPlugin, ReplayPlugin
from avalanche.training.storage_policy import ClassBalancedBuffer, ExperienceBalancedBuffer
from torch import nn
from tqdm.auto import tqdm

from cl_binvae.atomic import atomic_path, write_json, write_text
from cl_binvae.diagnostics import replay_class_balance, summarize
from cl_binvae.metrics import summarize_matrix
from cl_binvae.presets import GENERATIVE, RunConfig
from cl_binvae.replay import ReplayConfig
from cl_binvae.solvers import build_solver
from cl_binvae.strategy import BinVAEGenerativeReplay, FiniteLossCheck, TensorStrategy
from cl_binvae.streams import Stream, build_stream
from cl_binvae.tensor_data import dataset_tensors
from cl_binvae.vae import build_vae

# Strategies whose whole state we own, so a run can resume mid-stream. Avalanche's ER and
# GenerativeReplay keep state in objects that do not checkpoint (save_checkpoint fails with
# a dill error on this stack): those rerun from the first experience.
RESUMABLE = ("naive", "joint", "dgr", "binvae_gr")
_ACC_KEY = re.compile(r"^Top1_Acc_Exp/eval_phase/test_stream/Task\d+/Exp(\d+)$")
_DIAGNOSTIC_IMAGES = 1000


@dataclass
class Progress:
    """What a run has produced so far; checkpointed after every experience."""

    rows: list[list[float]] = field(default_factory=list)  # the accuracy matrix, row by row
    initial: list[float] = field(default_factory=list)  # a fresh model's accuracies (for FWT)
    diagnostics: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0


class ProgressBar(SupervisedPlugin):
    """A tqdm bar over each experience's training iterations."""

    def __init__(self, label: str, enabled: bool) -> None:
        super().__init__()
        self.label, self.enabled, self.bar = label, enabled, None

    def before_training_epoch(self, strategy: Any, **kwargs: Any) -> None:
        if self.enabled and self.bar is None:
            exp = strategy.experience.current_experience
            total = len(strategy.dataloader) * strategy.train_epochs
            self.bar = tqdm(total=total, desc=f"{self.label} exp {exp}", leave=False,
                            unit="it", mininterval=0.5)

    def after_training_iteration(self, strategy: Any, **kwargs: Any) -> None:
        if self.bar is not None:
            self.bar.update()

    def after_training_exp(self, strategy: Any, **kwargs: Any) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def run_directory(run: RunConfig, out_root: Path) -> Path:
    return Path(out_root) / run.dir_name


def is_finished(run: RunConfig, out_root: Path) -> bool:
    return (run_directory(run, out_root) / "metrics.json").exists()


def execute_run(run: RunConfig, out_root: str | os.PathLike, data_root: str | None = None,
                device: str = "cpu", progress: bool = True) -> dict[str, Any]:
    """Train and evaluate ``run`` into its directory under ``out_root``; return its metrics.

    A finished run is not repeated; an unfinished resumable one continues from its last
    finished experience, with the random state it had there.
    """
    out = run_directory(run, Path(out_root))
    if (out / "metrics.json").exists():
        return json.loads((out / "metrics.json").read_text())
    # Bad data or settings fail here, before anything is written.
    stream = build_stream(run.stream_config(), data_root)
    out.mkdir(parents=True, exist_ok=True)
    if not (out / "config.json").exists():  # a resumed run keeps the record of its start
        write_json(out / "config.json", {"run_id": run.run_id, **run.describe(),
                                         **environment(device)})
    _seed_everything(run.seed)
    strategy = build_strategy(run, stream, device, ProgressBar(run.method, progress))
    state = Progress()
    checkpoint = out / "progress.pt"
    if run.strategy in RESUMABLE and checkpoint.exists():
        snapshot = torch.load(checkpoint, map_location="cpu", weights_only=False)
        state = _restore(strategy, snapshot, device)
    elif checkpoint.exists():
        checkpoint.unlink()  # not resumable: start over

    test_stream = stream.benchmark.test_stream
    experiences = _training_experiences(run, stream)
    if not state.initial:
        state.initial = evaluate(strategy, test_stream)
    for i in range(len(state.rows), len(experiences)):
        start = time.perf_counter()
        _set_epochs(run, strategy, experiences[i])
        strategy.train(experiences[i])
        state.rows.append(evaluate(strategy, test_stream))
        if run.strategy in GENERATIVE:
            state.diagnostics.append(_diagnose(strategy, test_stream, i, out))
        elif run.strategy == "avalanche_gr":
            _save_samples(strategy.generator_strategy.model.generate(64), out, i)
        state.seconds += time.perf_counter() - start
        if progress:
            tqdm.write(f"{run.method} seed {run.seed}: experience {i + 1}/{len(experiences)} "
                       f"mean accuracy so far {np.mean(state.rows[-1][:i + 1]):.3f} "
                       f"({state.seconds:.0f} s)")
        if run.strategy in RESUMABLE:
            with atomic_path(checkpoint) as tmp:
                torch.save(_snapshot(strategy, state), tmp)
    return _finish(run, state, out)


def evaluate(strategy: Any, test_stream: Any) -> list[float]:
    """Test accuracy on every experience of ``test_stream``, in order."""
    results = strategy.eval(test_stream)
    accuracy = {int(m.group(1)): float(v) for k, v in results.items()
                if (m := _ACC_KEY.match(k))}
    return [accuracy[j] for j in range(len(test_stream))]


def build_strategy(run: RunConfig, stream: Stream, device: str,
                   *plugins: SupervisedPlugin) -> Any:
    """The Avalanche strategy of ``run.strategy`` with the protocol's models and numbers."""
    protocol = run.protocol
    plugins = (*plugins, FiniteLossCheck())
    n_tasks = stream.n_experiences if run.scenario == "task" else 1
    model = build_solver(stream.input_shape, stream.n_outputs, n_tasks, protocol.solver)
    optimizer = torch.optim.Adam(model.parameters(), lr=protocol.lr)
    common = {"model": model, "optimizer": optimizer, "train_mb_size": protocol.batch_size,
              "eval_mb_size": protocol.eval_batch_size, "device": device,
              "evaluator": EvaluationPlugin(accuracy_metrics(experience=True), loggers=[])}
    if run.strategy in GENERATIVE:
        generator = build_vae(stream.input_shape, protocol.generator)
        replay = ReplayConfig(replay_size=protocol.replay_size,
                              temperature=protocol.temperature if run.distill else None,
                              generator_iterations=protocol.generator_iterations,
                              generator_batch_size=protocol.batch_size,
                              generator_lr=protocol.generator_lr,
                              replay_labels=run.replay_labels,
                              active_classes=run.active_classes)
        return BinVAEGenerativeReplay(generator=generator, replay=replay,
                                      train_iterations=protocol.iterations,
                                      plugins=list(plugins), **common)
    if run.strategy == "avalanche_gr":
        return _avalanche_generative_replay(stream, list(plugins), common)
    if run.strategy == "er":
        plugins = (*plugins, ReplayPlugin(mem_size=_er_memory(run, stream),
                                          storage_policy=_er_buffer(run, stream)))
    iterations = None if run.strategy == "er" else protocol.iterations
    if run.strategy == "joint":  # one experience of all the data: the same total budget
        iterations = protocol.iterations * stream.n_experiences
    return TensorStrategy(criterion=nn.CrossEntropyLoss(), train_iterations=iterations,
                          plugins=list(plugins), **common)


def environment(device: str) -> dict[str, Any]:
    """Git commit, package versions and device, recorded with every run."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], capture_output=True, text=True, check=True,
                              cwd=Path(__file__).parent).stdout.strip()

    try:  # "-dirty": the code that ran differs from the commit
        commit = git("rev-parse", "HEAD") + ("-dirty" if git("status", "--porcelain",
                                                             "--untracked-files=no") else "")
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    if device.startswith("cuda"):
        name = torch.cuda.get_device_name(torch.device(device))
    else:
        name = f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    versions = {"python": platform.python_version(), "torch": torch.__version__,
                "torchvision": torchvision.__version__, "numpy": np.__version__}
    for dist in ("avalanche-lib", "cl_binvae"):
        versions[dist] = metadata.version(dist)
    return {"git_commit": commit, "versions": versions, "device": f"{device} ({name})"}


# -- helpers -----------------------------------------------------------------------------------
def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _training_experiences(run: RunConfig, stream: Stream) -> list[Any]:
    experiences = list(stream.benchmark.train_stream)
    if run.strategy != "joint":
        return experiences
    joint = copy.copy(experiences[0])
    joint.dataset = functools.reduce(lambda a, b: a.concat(b), [e.dataset for e in experiences])
    return [joint]


def _set_epochs(run: RunConfig, strategy: Any, experience: Any) -> None:
    """Avalanche's ER and GenerativeReplay count epochs: match the protocol's iterations."""
    if run.strategy not in ("er", "avalanche_gr"):
        return
    protocol = run.protocol
    epochs = max(1, round(protocol.iterations * protocol.batch_size / len(experience.dataset)))
    strategy.train_epochs = epochs
    if run.strategy == "avalanche_gr":
        strategy.generator_strategy.train_epochs = epochs


def _er_memory(run: RunConfig, stream: Stream) -> int:
    n_classes = sum(len(c) for c in stream.classes_per_experience)
    return run.protocol.er_samples_per_class * n_classes


def _er_buffer(run: RunConfig, stream: Stream) -> Any:
    """100 samples per class: balanced over classes in class-IL; in task- and domain-IL,
    where labels repeat across experiences, over experiences of equal class counts."""
    size = _er_memory(run, stream)
    if run.scenario == "class":
        return ClassBalancedBuffer(size, adaptive_size=False, total_num_classes=stream.n_outputs)
    return ExperienceBalancedBuffer(size, adaptive_size=False,
                                    num_experiences=stream.n_experiences)


def _avalanche_generative_replay(stream: Stream, plugins: list, common: dict) -> Any:
    """Avalanche's GenerativeReplay with its default generator (an MLP VAE with a 2-d latent,
    Adam lr 0.01, weight decay 1e-4), built here only to fit the stream's input shape and to
    keep its generator's evaluator silent."""
    device = common["device"]
    vae = MlpVAE(stream.input_shape, nhid=2, device=device)
    generator_strategy = VAETraining(
        model=vae, optimizer=torch.optim.Adam(vae.parameters(), lr=0.01, weight_decay=1e-4),
        criterion=VAE_loss, train_mb_size=common["train_mb_size"],
        eval_mb_size=common["eval_mb_size"], device=device,
        plugins=[GenerativeReplayPlugin()],
        evaluator=EvaluationPlugin(loggers=[]))
    return GenerativeReplay(criterion=nn.CrossEntropyLoss(), plugins=plugins,
                            generator_strategy=generator_strategy, **common)


def _diagnose(strategy: Any, test_stream: Any, i: int, out: Path) -> dict[str, float]:
    """Generator diagnostics on test images of the experiences seen so far, samples, and how
    replay spreads over the classes seen so far."""
    plugin = strategy.replay_plugin
    generator = plugin.generator
    x = torch.cat([dataset_tensors(e.dataset, strategy.device)[0]
                   for e in test_stream[:i + 1]])
    pick = torch.randperm(len(x), generator=torch.Generator().manual_seed(i))
    row = {"experience": i, **summarize(generator, x[pick[:_DIAGNOSTIC_IMAGES].to(x.device)])}
    _save_samples(generator.sample(64), out, i)
    # Its own random stream, so that measuring replay does not change what the run does next.
    rng = torch.Generator(strategy.device).manual_seed(i)
    tasks, labels = plugin.replayed_classes(_DIAGNOSTIC_IMAGES, rng)
    balance = replay_class_balance(tasks, labels, plugin.class_keys)
    return row | {f"replay_{key}": value for key, value in balance.items()}


def _save_samples(images: torch.Tensor, out: Path, i: int) -> None:
    with atomic_path(out / f"samples_exp{i}.png") as tmp:
        torchvision.utils.save_image(images.detach().cpu().clamp(0, 1), tmp, nrow=8)


def _snapshot(strategy: Any, state: Progress) -> dict[str, Any]:
    plugin = getattr(strategy, "replay_plugin", None)
    return {"progress": state, "model": strategy.model.state_dict(),
            "optimizer": strategy.optimizer.state_dict(),
            "replay": None if plugin is None else plugin.state_dict(),
            "rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def _restore(strategy: Any, snapshot: dict[str, Any], device: str) -> Progress:
    strategy.model.load_state_dict(snapshot["model"])
    strategy.model.to(device)
    # Avalanche resets the optimizer's state the first time a strategy trains; do that reset
    # now, so the state loaded next is the one the next experience starts from.
    strategy.make_optimizer(reset_optimizer_state=True)
    strategy.optimizer.load_state_dict(snapshot["optimizer"])
    if snapshot["replay"] is not None:
        strategy.replay_plugin.generator.to(device)  # so its optimizer state lands there too
        strategy.replay_plugin.load_state_dict(snapshot["replay"], strategy.model)
    torch.set_rng_state(snapshot["rng"])
    if snapshot["cuda_rng"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(snapshot["cuda_rng"])
    return snapshot["progress"]


def _finish(run: RunConfig, state: Progress, out: Path) -> dict[str, Any]:
    acc = np.array(state.rows)
    labels = ["joint"] if run.strategy == "joint" else list(range(len(acc)))
    matrix = pd.DataFrame(acc, columns=[f"exp_{j}" for j in range(acc.shape[1])])
    matrix.insert(0, "after", labels)
    write_text(out / "accuracy_matrix.csv", matrix.to_csv(index=False, float_format="%.6f"))
    if state.diagnostics:
        write_text(out / "diagnostics.csv", pd.DataFrame(state.diagnostics).to_csv(index=False))
    metrics = summarize_matrix(acc, np.array(state.initial))
    if run.strategy == "joint":
        metrics["avg_accuracy_per_step"] = None
    metrics.update(n_experiences=acc.shape[1], wall_clock_s=round(state.seconds, 3))
    write_json(out / "metrics.json", metrics)
    (out / "progress.pt").unlink(missing_ok=True)
    return metrics
