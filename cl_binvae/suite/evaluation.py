"""Evaluation: the evaluator every strategy gets, with the user's loggers, and reading
per-experience accuracy out of Avalanche's metric names.

Loggers are Avalanche's own, so a run shows up wherever users watch their other Avalanche runs:
``text`` (a log file in the run directory), ``csv`` (Avalanche's CSV files), ``tensorboard``
and ``wandb`` (optional extras). Without loggers the evaluator computes only what the driver
reads, per-experience test accuracy.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cl_binvae.suite.config import LOGGERS

_ACC_KEY = re.compile(r"^Top1_Acc_Exp/eval_phase/test_stream/Task\d+/Exp(\d+)$")
LOG_FOLDER = "logs"  # inside the run directory


def check_loggers(names: Sequence[str]) -> None:
    """Raise ``ImportError`` naming the extra to install for a logger whose package is missing
    (``ValueError`` for an unknown name), before anything runs."""
    for name in names:
        if name not in LOGGERS:
            raise ValueError(f"unknown logger {name!r}; choose from {', '.join(LOGGERS)}")
        package = LOGGERS[name]
        if package is None:
            continue
        try:
            importlib.import_module(package)
        except ImportError:
            raise ImportError(f"--logger {name} needs the {package} package: pip install "
                              f"'cl_binvae[{name}]'") from None


def make_evaluator(loggers: Sequence[str], run_dir: Path, run_name: str) -> Any:
    """An ``EvaluationPlugin`` with per-experience accuracy and, when ``loggers`` are given,
    epoch and stream accuracy and loss, reported to them (files under ``run_dir/logs``).
    It also refuses non-finite outputs (``finite_outputs``): every method evaluates through
    it, as the driver reads its accuracies."""
    from avalanche.evaluation.metrics import accuracy_metrics, loss_metrics
    from avalanche.training.plugins import EvaluationPlugin

    if not loggers:
        return EvaluationPlugin(accuracy_metrics(experience=True), finite_outputs(),
                                loggers=[])
    folder = Path(run_dir) / LOG_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    made = [_logger(name, folder, run_name) for name in loggers]
    return EvaluationPlugin(accuracy_metrics(epoch=True, experience=True, stream=True),
                            loss_metrics(epoch=True, experience=True, stream=True),
                            finite_outputs(), loggers=made)


def finite_outputs() -> Any:
    """A metric that reports nothing and raises ``FloatingPointError`` at an evaluation
    minibatch whose outputs hold a NaN or +inf: argmax would still pick a class, and the run
    would finish with a meaningless accuracy. -inf is a score (the generative classifier's
    for classes it has not seen)."""
    import torch
    from avalanche.evaluation import PluginMetric

    class FiniteOutputs(PluginMetric[None]):
        def after_eval_iteration(self, strategy: Any) -> None:
            output = strategy.mb_output
            if isinstance(output, torch.Tensor) and (torch.isnan(output).any()
                                                     or torch.isposinf(output).any()):
                raise FloatingPointError(
                    f"the solver's outputs are not finite on experience "
                    f"{strategy.experience.current_experience} of the test stream")

        def result(self) -> None:
            return None

        def reset(self) -> None:
            pass

    return FiniteOutputs()


def _logger(name: str, folder: Path, run_name: str) -> Any:
    from avalanche import logging

    if name == "text":
        # Appends: a resumed run continues its log. ``close_loggers`` closes it.
        return logging.TextLogger(open(folder / "log.txt", "a", encoding="utf-8"))
    if name == "csv":
        return logging.CSVLogger(log_folder=str(folder / "csv"))
    if name == "tensorboard":
        return logging.TensorboardLogger(tb_log_dir=folder / "tensorboard")
    return logging.WandBLogger(project_name="cl_binvae", run_name=run_name, dir=folder)


def close_loggers(evaluator: Any) -> None:
    """Close the files the evaluator's loggers hold open (Avalanche's text logger has no
    ``close``: its file is closed here)."""
    from avalanche.logging import TextLogger

    for logger in evaluator.loggers:
        if isinstance(logger, TextLogger):
            logger.file.close()
        elif callable(getattr(logger, "close", None)):
            logger.close()


def evaluate(strategy: Any, test_stream: Any) -> list[float]:
    """Test accuracy on every experience of ``test_stream``, in order."""
    results = strategy.eval(test_stream)
    accuracy = {int(m.group(1)): float(v) for k, v in results.items()
                if (m := _ACC_KEY.match(k))}
    return [accuracy[j] for j in range(len(test_stream))]
