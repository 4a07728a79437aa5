"""What a trained strategy keeps besides its model: stored samples and extra parameters.

A method's memory is what it carries from one experience to the next: ER's buffer, A-GEM's
reference samples, iCaRL's exemplars, a generator, the previous model LwF distils from, the
importances EWC and SI weigh their penalties with. :func:`measure_footprint` finds it by
looking, not by asking the method: it walks what the strategy's own plugins (and a template's
storage policy) hold and counts

- ``model_parameters``: the numbers in the model's parameters and buffers (batch-norm
  statistics, the generative classifier's fitted prior moments);
- ``stored_samples``: examples of the training data, the length of every dataset met plus the
  rows of every tensor shaped as a batch of inputs (iCaRL keeps its exemplars so); what a
  sample carries with it counts with the sample, whether inside the dataset (DER's logits)
  or beside it, one row per sample (a reservoir buffer's weights);
- ``extra_parameters``: every other number in a tensor or module held there (a generator's
  weights, a copied model, importances, working buffers kept between iterations such as
  A-GEM's reference gradient), the model's own tensors and optimizer states excepted.

The evaluation plugin's records are not the method's and are not walked. A user's method is
measured the same way, whatever its plugins are.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from avalanche.benchmarks.utils import AvalancheDataset
from avalanche.training.plugins import EvaluationPlugin
from torch import nn
from torch.utils.data import DataLoader, Dataset

#: How deep into attributes the walk goes: Avalanche's storage policies keep their buffers
#: four levels below the plugin (plugin -> policy -> groups -> group buffer -> dataset).
_DEPTH = 6


@dataclass(frozen=True)
class Footprint:
    """What a strategy keeps: its model's size and what it holds besides."""

    model_parameters: int
    extra_parameters: int
    stored_samples: int


def measure_footprint(strategy: Any, input_shape: tuple[int, ...]) -> Footprint:
    """Count what ``strategy`` keeps (see the module doc); ``input_shape`` is one example's
    shape."""
    census = _Census(input_shape, strategy.model)
    for root in (*strategy.plugins, getattr(strategy, "storage_policy", None)):
        census.visit(root, _DEPTH)
    return Footprint(model_parameters=sum(t.numel() for t in _tensors(strategy.model)),
                     extra_parameters=census.numbers, stored_samples=census.samples)


def _tensors(module: nn.Module) -> Iterable[torch.Tensor]:
    """A module's parameters and buffers (not what ``state_dict`` may add of other kinds)."""
    yield from module.parameters()
    yield from module.buffers()


class _Census:
    def __init__(self, input_shape: tuple[int, ...], model: nn.Module) -> None:
        self.input_shape = tuple(input_shape)
        self.seen: set[int] = {id(model)}
        self.counted = {_storage(t) for t in _tensors(model)}  # the model's: never extra
        self.numbers = 0
        self.samples = 0

    def visit(self, obj: Any, depth: int) -> None:
        if depth < 0 or obj is None or id(obj) in self.seen:
            return
        self.seen.add(id(obj))
        if isinstance(obj, torch.Tensor):
            self._tensor(obj)
        elif isinstance(obj, nn.Module):
            for tensor in _tensors(obj):  # a module's tensors are numbers, whatever their shape
                self._count(tensor.detach(), as_samples=False)
        elif isinstance(obj, (Dataset, AvalancheDataset)):
            self.samples += len(obj)  # its tensors are the samples themselves
        elif isinstance(obj, (EvaluationPlugin, torch.optim.Optimizer, DataLoader,
                              torch.Generator, type)):
            return  # metrics, optimizer state and loaders are not what the method keeps
        elif isinstance(obj, Mapping):
            for value in obj.values():
                self.visit(value, depth - 1)
        elif isinstance(obj, (list, tuple, set, frozenset)):
            for value in obj:
                self.visit(value, depth - 1)
        elif hasattr(obj, "__dict__") and not inspect.isroutine(obj) and not _iterator(obj):
            self._attributes(vars(obj), depth)

    def _attributes(self, values: Mapping[str, Any], depth: int) -> None:
        # One row per sample beside a dataset (a reservoir's weights) is the samples' own.
        sizes = {len(v) for v in values.values() if isinstance(v, (Dataset, AvalancheDataset))}
        for value in values.values():
            if (isinstance(value, torch.Tensor) and value.dim() >= 1
                    and value.shape[0] in sizes and id(value) not in self.seen):
                self.seen.add(id(value))
                self.counted.add(_storage(value))
            else:
                self.visit(value, depth - 1)

    def _tensor(self, tensor: torch.Tensor) -> None:
        self._count(tensor, as_samples=tuple(tensor.shape[1:]) == self.input_shape)

    def _count(self, tensor: torch.Tensor, as_samples: bool) -> None:
        key = _storage(tensor)
        if tensor.numel() == 0 or key in self.counted:
            return
        self.counted.add(key)
        if as_samples:
            self.samples += tensor.shape[0]
        else:
            self.numbers += tensor.numel()


def _storage(tensor: torch.Tensor) -> tuple[int, int]:
    # Where its numbers are and how many: a tensor referred to twice counts once.
    return tensor.data_ptr(), tensor.numel()


def _iterator(obj: Any) -> bool:
    # A data loader's iterator holds the loader's dataset again, and nothing of its own.
    return hasattr(obj, "__next__")
