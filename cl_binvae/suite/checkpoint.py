"""Checkpoints between experiences: the state a resumable method needs to continue a run.

A snapshot holds the run's id, the solver, its optimizer, the state of every plugin that has
one (a plugin with ``state_dict()`` and ``load_state_dict(state, model)``, such as our replay
plugin), the run's progress so far and the random state, written and read with the same keys.
"""

from __future__ import annotations

import io
import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn.modules.module import _EXTRA_STATE_KEY_SUFFIX

from cl_binvae.suite.atomic import atomic_path, check_free_space


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


def previous(path: Path) -> Path:
    """Where ``save`` keeps the checkpoint it replaced at ``path`` (the experience before):
    resuming retrains one experience from it to check that the method resumes at all."""
    return path.with_name(f"{path.stem}_before{path.suffix}")


def remove(path: Path) -> None:
    """Delete the checkpoint at ``path`` and the one kept before it."""
    path.unlink(missing_ok=True)
    previous(path).unlink(missing_ok=True)


def save(path: Path, run_id: str, strategy: Any, progress: Progress) -> None:
    """Write the strategy's state and ``progress`` of run ``run_id`` to ``path`` atomically,
    keeping the checkpoint it replaces as ``previous(path)``."""
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
    # Serialized in memory first: its size is known before the disk is touched, and a full
    # disk is one line naming the folder, not a traceback from torch's writer.
    buffer = io.BytesIO()
    torch.save(snapshot, buffer)
    check_free_space(path.parent, buffer.getbuffer().nbytes, "a checkpoint")
    with atomic_path(path) as tmp:
        tmp.write_bytes(buffer.getbuffer())
        if path.exists():
            os.replace(path, previous(path))


def read(path: Path, run_id: str) -> dict[str, Any]:
    """The snapshot at ``path``. Raises whatever torch raises for an unreadable file, and
    ``ValueError`` or ``TypeError`` for a snapshot of another run (one written before
    snapshots named their run passes) or layout."""
    snapshot = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(snapshot, dict) or not isinstance(snapshot.get("progress"), Progress):
        raise TypeError("it is not a checkpoint of the suite")
    if snapshot.get("run_id", run_id) != run_id:
        raise ValueError(f"it is the checkpoint of run {snapshot['run_id']}, not {run_id}")
    return snapshot


def load(path: Path, run_id: str, strategy: Any, device: str) -> Progress:
    """Restore ``strategy`` from ``path`` and return the progress saved with it.

    Raises as ``read`` does, and ``ValueError`` for a snapshot of another set of plugins;
    the caller decides to start over.
    """
    snapshot = read(path, run_id)
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
    return snapshot["progress"]


def difference(snapshot: dict[str, Any], strategy: Any) -> str | None:
    """Where ``strategy``'s model and plugin states differ from ``snapshot``'s (the first
    tensor or number, named by its keys), or None. Tensors agree to a relative 1e-3 of their
    norm, so that a resume on other threads' rounding is not taken for another state. A
    module's extra state is left out: there it keeps what evaluation computed (the generative
    classifier's scores), which a strategy that only trained does not have."""
    live = {"model": _trained_state(strategy.model.state_dict()),
            "plugins": [p.state_dict() for p in stateful_plugins(strategy)]}
    return _difference({"model": _trained_state(snapshot["model"]),
                        "plugins": snapshot["plugins"]}, live, "")


def _trained_state(state: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in state.items()
            if not key.endswith(_EXTRA_STATE_KEY_SUFFIX)}


def _difference(saved: Any, live: Any, where: str) -> str | None:
    if isinstance(saved, torch.Tensor):
        if not isinstance(live, torch.Tensor) or saved.shape != live.shape:
            return where
        live = live.detach().cpu()
        if not saved.is_floating_point():
            return None if torch.equal(saved, live.to(saved.dtype)) else where
        gap = torch.linalg.vector_norm((saved - live).double())
        return None if gap <= 1e-3 * torch.linalg.vector_norm(saved.double()) + 1e-6 else where
    if isinstance(saved, dict):
        if not isinstance(live, dict) or set(saved) != set(live):
            return where
        return next((d for key in saved
                     if (d := _difference(saved[key], live[key], f"{where}.{key}".lstrip(".")))
                     ), None)
    if isinstance(saved, (list, tuple)):
        if not isinstance(live, (list, tuple)) or len(saved) != len(live):
            return where
        return next((d for i, (a, b) in enumerate(zip(saved, live, strict=True))
                     if (d := _difference(a, b, f"{where}[{i}]"))), None)
    if isinstance(saved, (int, float)) and not isinstance(saved, bool):
        return None if saved == live else where
    return None  # other objects (a prior's settings, say) are not state that trains
