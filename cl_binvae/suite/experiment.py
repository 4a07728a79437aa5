"""Execute one run: build its stream and strategy, train experience by experience, evaluate
after each, checkpoint, and write the run directory (see :mod:`cl_binvae.suite.rundir`).

A finished run is not repeated. Anything else is resumed from its checkpoint when the method
resumes and the checkpoint loads, and started over otherwise; a damaged run directory is
reported and rerun. A lock per run directory keeps two drivers from doing the same run.
"""

from __future__ import annotations

import copy
import errno
import fcntl
import functools
import os
import random
import sys
import time
import traceback
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torchvision
from tqdm.auto import tqdm

from cl_binvae.model.diagnostics import diagnose, replay_class_balance
from cl_binvae.replay.plugin import BinVAEReplayPlugin
from cl_binvae.suite import checkpoint
from cl_binvae.suite.atomic import atomic_path, remove_orphans, write_text
from cl_binvae.suite.context import MethodContext, check_fits
from cl_binvae.suite.driver_plugins import FiniteLossCheck, ProgressBar
from cl_binvae.suite.environment import environment
from cl_binvae.suite.evaluation import close_loggers, evaluate, make_evaluator
from cl_binvae.suite.footprint import Footprint, measure_footprint
from cl_binvae.suite.metrics import summarize_matrix
from cl_binvae.suite.run_config import RunConfig
from cl_binvae.suite.rundir import (
    ERROR_FILE,
    METRICS_FILE,
    PROGRESS_FILE,
    Notify,
    RunDirectory,
    RunError,
    RunMetrics,
    RunRecord,
    samples_name,
    written_here,
)
from cl_binvae.suite.streams import Stream, build_stream
from cl_binvae.training.tensor_batches import dataset_tensors

_DIAGNOSTIC_IMAGES = 1000


class RunFailed(Exception):
    """A run stopped by an error of its own: whatever its method raised once training began
    (a diverged loss, a builder that fails or returns no strategy, non-finite weights or
    outputs), or a run directory that is not a folder. A sweep can go on with its other
    runs; bad data or settings fail before this, and so does a machine out of memory or disk
    (``out_of_resources``)."""


class OutOfResources(OSError):
    """The machine ran out of memory or disk in a run (``out_of_resources``): what stops a
    sweep, in one line naming the run."""


def out_of_resources(err: BaseException) -> bool:
    """Whether ``err`` says the machine ran out of memory or disk, which no other run would
    escape either: ``MemoryError``, torch's allocation failures, a full disk or quota."""
    if isinstance(err, MemoryError):
        return True
    if isinstance(err, OSError):
        return err.errno in (errno.ENOSPC, errno.EDQUOT)
    return isinstance(err, RuntimeError) and any(
        words in str(err) for words in ("out of memory", "can't allocate memory"))


def _warn(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def finished_metrics(run: RunConfig, out_root: str | os.PathLike) -> RunMetrics | None:
    """The metrics of ``run`` if its directory holds a finished, undamaged run."""
    try:
        return RunDirectory.of(run, out_root).read_finished()[1]
    except RunError:
        return None


def execute_run(run: RunConfig, out_root: str | os.PathLike, data_root: str | None = None,
                device: str = "cpu", progress: bool = True, loggers: Sequence[str] = (),
                report: Notify = _warn) -> RunMetrics | None:
    """Train and evaluate ``run`` into its directory under ``out_root``; return its metrics,
    or None when another driver holds the run (it is reported and skipped).

    ``ValueError`` for data or settings that cannot make the run (before anything is
    written); ``RunFailed`` for a run that stopped once training began."""
    directory = RunDirectory.of(run, out_root)
    try:
        return directory.read_finished()[1]
    except RunError as err:
        if directory.file(METRICS_FILE).exists():
            report(f"{directory.path}: {err}; running it again")
    # Bad data or settings fail here, before anything is written.
    stream = build_stream(run.stream_config(), data_root)
    check_fits(run, stream)
    if not directory.path.is_dir() and (directory.path.is_symlink() or directory.path.exists()):
        raise RunFailed(f"{directory.path} is not a folder (a file, or a symbolic link that "
                        "loops or leads nowhere); move it away to run it")
    directory.path.mkdir(parents=True, exist_ok=True)
    with _lock(directory.path) as held:
        if not held:
            report(f"{directory.path}: another driver is running it; skipped")
            return None
        try:  # another driver may have finished it while this one built the stream
            return directory.read_finished()[1]
        except RunError:
            pass
        remove_orphans(directory.path, earlier=written_here)
        directory.file(METRICS_FILE).unlink(missing_ok=True)  # a damaged one: rerun from here
        directory.file(ERROR_FILE).unlink(missing_ok=True)  # an earlier attempt's failure
        return _train(run, directory, stream, device, progress, loggers, report)


def build_strategy(run: RunConfig, stream: Stream, device: str,
                   *plugins: Any, evaluator: Any = None) -> Any:
    """The strategy of ``run``'s method, with the driver's ``plugins`` and a finite-loss
    check; ``evaluator`` defaults to per-experience accuracy without loggers."""
    context = MethodContext(run=run, stream=stream, device=device,
                            plugins=[*plugins, FiniteLossCheck()],
                            evaluator=evaluator or make_evaluator((), Path(), ""))
    strategy = run.method_record.build(context)
    if not callable(getattr(strategy, "train", None)):
        raise TypeError(f"method {run.strategy}'s builder returned {strategy!r}, not an "
                        "Avalanche strategy")
    if run.method_record.replays and _replay_plugin(strategy) is None:
        raise ValueError(f"method {run.strategy} is registered with ReplaySettings, but its "
                         "strategy has no BinVAEReplayPlugin (build it with "
                         "ctx.generative_replay() or add one)")
    return strategy


# -- the loop ----------------------------------------------------------------------------------
def _train(run: RunConfig, directory: RunDirectory, stream: Stream, device: str,
           progress: bool, loggers: Sequence[str], report: Notify) -> RunMetrics:
    """Train ``run`` with its loggers open, closing them whatever fails; write its results."""
    evaluator = make_evaluator(loggers, directory.path, directory.path.name)
    try:
        state, footprint = _train_experiences(run, directory, stream, device, progress, report,
                                              evaluator)
    except Exception as err:  # whatever a method raises fails its run alone
        if out_of_resources(err):
            raise
        # The driver reports one line; the traceback stays with the run, for a bug's sake.
        write_text(directory.file(ERROR_FILE), traceback.format_exc())
        raise RunFailed(f"{' '.join(str(err).split())} (traceback in "
                        f"{directory.file(ERROR_FILE)})") from err
    finally:
        close_loggers(evaluator)
    return _finish(directory, run.method_record.joint, state, footprint)


def _train_experiences(run: RunConfig, directory: RunDirectory, stream: Stream, device: str,
                       progress: bool, report: Notify, evaluator: Any
                       ) -> tuple[checkpoint.Progress, Footprint | None]:
    """Resume or start the run's strategy and train it on the experiences not done yet,
    checkpointing after each; the accuracy rows, diagnostics and time so far, and what the
    trained strategy keeps."""
    method = run.method_record

    def fresh_strategy() -> Any:
        _seed_everything(run.seed)
        return build_strategy(run, stream, device, ProgressBar(run.method, progress),
                              evaluator=evaluator)

    state, resumed = checkpoint.Progress(), False
    saved = directory.file(PROGRESS_FILE)
    if saved.exists() and method.resumable:
        # Checked first: the check trains a strategy of its own, from the random state of
        # the checkpoint before, which loading the resumed one then restores.
        problem = _resume_problem(run, stream, device, saved)
        if problem is None:
            strategy = fresh_strategy()
            state, resumed = checkpoint.load(saved, run.run_id, strategy, device), True
        else:
            report(f"{saved}: {problem}; starting over")
    if not resumed:  # no checkpoint, one that does not resume, or a method that does not
        strategy = fresh_strategy()
        checkpoint.remove(saved)
    _write_record(run, directory, device, keep=resumed)

    test_stream = stream.benchmark.test_stream
    experiences = _training_experiences(stream, method.joint)
    if not state.initial:
        state.initial = evaluate(strategy, test_stream)
    for i in range(len(state.rows), len(experiences)):
        start = time.perf_counter()
        strategy.train(experiences[i])
        _check_finite_weights(strategy, i)
        state.rows.append(evaluate(strategy, test_stream))
        if method.replays:
            state.diagnostics.append(_diagnose(strategy, test_stream, i, directory))
        elif method.diagnose is not None:
            state.diagnostics.append(method.diagnose(strategy, test_stream, i))
        if not method.replays and method.samples is not None:
            _save_samples(method.samples(strategy, 64), directory, i)
        state.seconds += time.perf_counter() - start
        if progress:  # joint trains once on everything: its accuracy is on all of them
            seen = state.rows[-1] if method.joint else state.rows[-1][:i + 1]
            tqdm.write(f"{run.method} seed {run.seed}: experience {i + 1}/"
                       f"{len(experiences)} mean accuracy so far "
                       f"{np.mean(seen):.3f} ({state.seconds:.0f} s)")
        if method.resumable:
            checkpoint.save(saved, run.run_id, strategy, state)
    return state, _footprint(strategy, stream, report, run)


def _resume_problem(run: RunConfig, stream: Stream, device: str, saved: Path) -> str | None:
    """Why the checkpoint at ``saved`` cannot be resumed, or None. A method registered
    ``resumable`` says that all its state is in what a checkpoint saves; that is checked by
    retraining the last experience the checkpoint holds from the checkpoint before it (from
    scratch for the first) and comparing the states: one with state elsewhere would resume
    to other numbers without a word."""
    try:
        snapshot = checkpoint.read(saved, run.run_id)
    except Exception as err:  # noqa: BLE001 - any unreadable checkpoint means start over
        return f"cannot resume ({type(err).__name__}: {' '.join(str(err).split())})"
    last = len(snapshot["progress"].rows) - 1
    if last < 0:
        return "cannot resume (the checkpoint holds no finished experience)"
    _seed_everything(run.seed)
    check = build_strategy(run, stream, device)
    if last <= 0:  # as the run began: its fresh model's accuracies, then the first experience
        evaluate(check, stream.benchmark.test_stream)
    else:
        before = checkpoint.previous(saved)
        try:
            rows = checkpoint.load(before, run.run_id, check, device).rows
        except Exception as err:  # noqa: BLE001 - the same: no check, no resume
            return (f"cannot check that {run.strategy} resumes: {before.name} does not load "
                    f"({type(err).__name__})")
        if rows != snapshot["progress"].rows[:last]:
            return f"cannot check that {run.strategy} resumes: {before.name} is of another run"
    check.train(_training_experiences(stream, run.method_record.joint)[last])
    where = checkpoint.difference(snapshot, check)
    if where is not None:
        return (f"method {run.strategy} is registered resumable=True, but its experience "
                f"{last} retrained from the checkpoint before it ends in another state "
                f"({where}): some of its state is not in what a checkpoint saves (register it "
                "resumable=False, or give that state a state_dict)")
    return None


def _finish(directory: RunDirectory, joint: bool, state: checkpoint.Progress,
            footprint: Footprint | None) -> RunMetrics:
    acc = np.array(state.rows)
    summary = summarize_matrix(acc, np.array(state.initial))
    if joint:  # one row, trained on everything at once: no accuracy per step
        summary["avg_accuracy_per_step"] = None
    metrics = RunMetrics(**summary, n_experiences=acc.shape[1],
                         wall_clock_s=round(state.seconds, 3),
                         **(asdict(footprint) if footprint is not None else {}))
    directory.write_results(acc, joint, metrics, state.diagnostics)
    checkpoint.remove(directory.file(PROGRESS_FILE))
    return metrics


# -- helpers -----------------------------------------------------------------------------------
def _write_record(run: RunConfig, directory: RunDirectory, device: str, keep: bool) -> None:
    """Write ``config.json`` for a run that starts now; a resumed run keeps the record of its
    start (``keep``) when that record is intact and of this run."""
    if keep:
        try:
            if directory.read_record().run_id == run.run_id:
                return
        except RunError:
            pass
    directory.write_record(RunRecord(run_id=run.run_id, run=run,
                                     protocol=run.describe()["protocol"],
                                     **environment(device)))


def _footprint(strategy: Any, stream: Stream, report: Notify, run: RunConfig
               ) -> Footprint | None:
    """What the trained strategy keeps, or None, said in one line, where a method holds
    something the count cannot read: a finished run is not failed over a record."""
    try:
        return measure_footprint(strategy, stream.input_shape)
    except Exception as err:  # noqa: BLE001 - whatever a user's plugin holds
        report(f"{run.dir_name}: what {run.strategy} keeps was not counted "
               f"({type(err).__name__}: {' '.join(str(err).split())})")
        return None


def _check_finite_weights(strategy: Any, i: int) -> None:
    """``FloatingPointError`` for a solver (or our replay's generator) with a NaN or infinite
    parameter after experience ``i``: its accuracy would be a number, and meaningless."""
    plugin = _replay_plugin(strategy)
    models = {"solver": strategy.model, "generator": None if plugin is None else plugin.generator}
    for what, model in models.items():
        for name, weight in [] if model is None else model.named_parameters():
            if not torch.isfinite(weight).all():
                raise FloatingPointError(f"the {what}'s weights {name} are not finite after "
                                         f"experience {i}")


def _replay_plugin(strategy: Any) -> BinVAEReplayPlugin | None:
    return next((p for p in strategy.plugins if isinstance(p, BinVAEReplayPlugin)), None)


@contextmanager
def _lock(folder: Path) -> Iterator[bool]:
    """Hold an exclusive lock on ``folder`` itself while the body runs; yield False if
    another process holds it. The kernel drops the lock when a holder dies, even by kill -9;
    locking the folder, not a file in it, leaves nothing behind that a user could turn into
    something else (a ``.lock`` folder stopped every rerun)."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)  # and with it the lock


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _training_experiences(stream: Stream, joint: bool) -> list[Any]:
    experiences = list(stream.benchmark.train_stream)
    if not joint:
        return experiences
    merged = copy.copy(experiences[0])
    merged.dataset = functools.reduce(lambda a, b: a.concat(b), [e.dataset for e in experiences])
    return [merged]


def _diagnose(strategy: Any, test_stream: Any, i: int, directory: RunDirectory
              ) -> dict[str, float]:
    """Generator diagnostics on test images of the experiences seen so far, samples, and how
    replay spreads over the classes seen so far."""
    plugin = _replay_plugin(strategy)
    generator = plugin.generator
    x = torch.cat([dataset_tensors(e.dataset, strategy.device)[0]
                   for e in test_stream[:i + 1]])
    pick = torch.randperm(len(x), generator=torch.Generator().manual_seed(i))
    row = {"experience": i, **diagnose(generator, x[pick[:_DIAGNOSTIC_IMAGES].to(x.device)])}
    _save_samples(generator.sample(64), directory, i)
    # Its own random stream, so that measuring replay does not change what the run does next.
    rng = torch.Generator(strategy.device).manual_seed(i)
    tasks, labels = plugin.replayed_classes(_DIAGNOSTIC_IMAGES, rng)
    balance = replay_class_balance(tasks, labels, plugin.seen.keys)
    return row | {f"replay_{key}": value for key, value in balance.items()}


def _save_samples(images: torch.Tensor, directory: RunDirectory, i: int) -> None:
    with atomic_path(directory.file(samples_name(i))) as tmp:
        torchvision.utils.save_image(images.detach().cpu().clamp(0, 1), tmp, nrow=8)

