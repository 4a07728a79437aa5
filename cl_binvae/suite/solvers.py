"""Classifiers ("solvers") for the streams: an MLP or a small conv net, one head or one per task."""

from __future__ import annotations

import math

import torch
from avalanche.models import MultiTaskModule
from torch import nn

from cl_binvae.suite.config import SolverConfig

__all__ = ["SolverConfig", "build_solver"]


def build_trunk(input_shape: tuple[int, ...], config: SolverConfig) -> tuple[nn.Module, int]:
    """Feature extractor for ``input_shape`` and the width of its output."""
    layers: list[nn.Module] = []
    if config.arch == "conv":
        c, h, w = input_shape
        for a, b in zip((c, *config.channels), config.channels):
            layers += [nn.Conv2d(a, b, 3, stride=2, padding=1), nn.BatchNorm2d(b), nn.ReLU()]
            h, w = (h + 1) // 2, (w + 1) // 2
        width = config.channels[-1] * h * w
    else:
        width = math.prod(input_shape)
    layers.append(nn.Flatten())
    hidden = config.hidden if config.arch == "mlp" else config.hidden[-1:]
    for size in hidden:
        norm = [nn.BatchNorm1d(size)] if config.fc_batch_norm else []
        layers += [nn.Linear(width, size), *norm, nn.ReLU()]
        width = size
    return nn.Sequential(*layers), width


class Classifier(nn.Module):
    """Trunk and one linear head (class- and domain-IL)."""

    def __init__(self, input_shape: tuple[int, ...], n_outputs: int, config: SolverConfig):
        super().__init__()
        self.trunk, width = build_trunk(input_shape, config)
        self.head = nn.Linear(width, n_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.trunk(x))


class MultiHeadClassifier(MultiTaskModule):
    """Trunk and one linear head per task (task-IL); heads are built up front so that the
    state_dict has the same keys before and after training (checkpoints just load)."""

    def __init__(self, input_shape: tuple[int, ...], n_outputs: int, n_tasks: int,
                 config: SolverConfig):
        super().__init__()
        self.trunk, width = build_trunk(input_shape, config)
        self.heads = nn.ModuleList(nn.Linear(width, n_outputs) for _ in range(n_tasks))
        self.max_class_label = n_outputs

    def forward(self, x: torch.Tensor,
                task_labels: torch.Tensor | int | None) -> torch.Tensor | dict[int, torch.Tensor]:
        # Run the shared trunk once for the whole batch, then each task's rows through its head.
        features = self.trunk(x)
        if task_labels is None:  # Avalanche's convention (LwF uses it): every head's output
            return {task: head(features) for task, head in enumerate(self.heads)}
        if isinstance(task_labels, int):
            return self.heads[task_labels](features)
        out = features.new_zeros(len(x), self.max_class_label)
        for task in task_labels.unique().tolist():
            rows = task_labels == task
            out[rows] = self.heads[task](features[rows])
        return out

    def forward_single_task(self, x: torch.Tensor, task_label: int) -> torch.Tensor:
        return self.heads[task_label](self.trunk(x))


def build_solver(input_shape: tuple[int, ...], n_outputs: int, n_tasks: int = 1,
                 config: SolverConfig | None = None) -> nn.Module:
    """A single-head classifier, or a multi-head one when ``n_tasks`` > 1."""
    config = config or SolverConfig()
    if n_tasks > 1:
        return MultiHeadClassifier(input_shape, n_outputs, n_tasks, config)
    return Classifier(input_shape, n_outputs, config)
