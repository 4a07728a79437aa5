"""Checkpoints between experiences: the state a resumable method needs to continue a run.

A snapshot holds the run's id, the solver, its optimizer, the state of every plugin that has
one (a plugin with ``state_dict()`` and ``load_state_dict(state, model)``, such as our replay
plugin), the run's progress so far and the random state, written and read with the same keys.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cl_binvae.suite.atomic import atomic_path


@dataclass
class Progress:
    """What a run has produced so far; checkpointed after every experience."""

    rows: list[list[float]] = field(default_factory=list)  # the accuracy matrix, row by row
    initial: list[float] = field(default_factory=list)  # a fresh model's accuracies (for FWT)
    diagnostics: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0


def stateful_plugins(strategy: Any) -> list[Any]:
    """The strategy's plugins that checkpoint, in plugin order."""
    return [p for p in strategy.plugins
            if callable(getattr(p, "state_dict", None))
            and callable(getattr(p, "load_state_dict", None))]


def save(path: Path, run_id: str, strategy: Any, progress: Progress) -> None:
    """Write the strategy's state and ``progress`` of run ``run_id`` to ``path`` atomically."""
    snapshot = {
        "run_id": run_id,
        "progress": progress,
        "model": strategy.model.state_dict(),
        "optimizer": strategy.optimizer.state_dict(),
        "plugins": [p.state_dict() for p in stateful_plugins(strategy)],
        "rng": torch.get_rng_state(),
        # A user's resumable method may draw from Python's or NumPy's generators too.
        "python_rng": random.getstate(),
        "numpy_rng": np.random.get_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }
    with atomic_path(path) as tmp:
        torch.save(snapshot, tmp)


def load(path: Path, run_id: str, strategy: Any, device: str) -> Progress:
    """Restore ``strategy`` from ``path`` and return the progress saved with it.

    Raises whatever torch raises for an unreadable file, and ``ValueError`` or ``TypeError``
    for a snapshot of another run (one written before snapshots named their run passes), set
    of plugins or layout; the caller decides to start over.
    """
    snapshot = torch.load(path, map_location="cpu", weights_only=False)
    if snapshot.get("run_id", run_id) != run_id:
        raise ValueError(f"it is the checkpoint of run {snapshot['run_id']}, not {run_id}")
    plugins = stateful_plugins(strategy)
    if len(snapshot["plugins"]) != len(plugins):
        raise ValueError(f"the checkpoint holds {len(snapshot['plugins'])} plugin states, the "
                         f"strategy has {len(plugins)} plugins with state")
    strategy.model.load_state_dict(snapshot["model"])
    strategy.model.to(device)
    # Avalanche resets the optimizer's state the first time a strategy trains; do that reset
    # now, so the state loaded next is the one the next experience starts from.
    strategy.make_optimizer(reset_optimizer_state=True)
    strategy.optimizer.load_state_dict(snapshot["optimizer"])
    for plugin, state in zip(plugins, snapshot["plugins"], strict=True):
        plugin.load_state_dict(state, strategy.model)
    torch.set_rng_state(snapshot["rng"])
    random.setstate(snapshot["python_rng"])
    np.random.set_state(snapshot["numpy_rng"])
    if snapshot["cuda_rng"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(snapshot["cuda_rng"])
    if not isinstance(snapshot["progress"], Progress):
        raise TypeError("the checkpoint's progress record is not a Progress")
    return snapshot["progress"]
