"""What a trained strategy keeps besides its model: stored samples and extra parameters.

A method's memory is what it carries from one experience to the next: ER's buffer, A-GEM's
reference samples, iCaRL's exemplars, a generator, the previous model LwF distils from, the
importances EWC and SI weigh their penalties with. :func:`measure_footprint` finds it by
looking, not by asking the method: it walks what the strategy's own plugins (and a template's
storage policy) hold and counts

- ``stored_samples``: examples of the training data, the length of every dataset met plus the
  rows of every tensor shaped as a batch of inputs (iCaRL keeps its exemplars so);
- ``extra_parameters``: every other number in a tensor or module held there (a generator's
  weights, a copied model, importances, fitted prior moments), the model's own parameters
  and optimizer states excepted.

The evaluation plugin's records are not the method's and are not walked. A user's method is
measured the same way, whatever its plugins are; what a stored sample carries with it (DER's
logits) counts with the sample.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from avalanche.benchmarks.utils import AvalancheDataset
from torch import nn
from torch.utils.data import DataLoader, Dataset

#: How deep into attributes the walk goes: Avalanche's storage policies keep their buffers
#: three levels below the plugin (plugin -> policy -> group buffers -> dataset).
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
    from avalanche.training.plugins import EvaluationPlugin

    census = _Census(input_shape, strategy.model)
    for root in (*strategy.plugins, getattr(strategy, "storage_policy", None)):
        if root is not None and not isinstance(root, EvaluationPlugin):
            census.visit(root, _DEPTH)
    return Footprint(model_parameters=sum(p.numel() for p in strategy.model.parameters()),
                     extra_parameters=census.numbers, stored_samples=census.samples)


class _Census:
    def __init__(self, input_shape: tuple[int, ...], model: nn.Module) -> None:
        self.input_shape = tuple(input_shape)
        self.seen: set[int] = {id(model)}
        self.model_storage = {t.data_ptr() for t in model.state_dict().values()}
        self.storage: set[int] = set()
        self.numbers = 0
        self.samples = 0

    def visit(self, obj: Any, depth: int) -> None:
        if depth < 0 or id(obj) in self.seen or obj is None:
            return
        self.seen.add(id(obj))
        if isinstance(obj, torch.Tensor):
            self._tensor(obj)
        elif isinstance(obj, nn.Module):
            for tensor in obj.state_dict(keep_vars=True).values():
                self._tensor(tensor.detach())
        elif isinstance(obj, (Dataset, AvalancheDataset)):
            self.samples += len(obj)  # its tensors are the samples themselves
        elif isinstance(obj, (torch.optim.Optimizer, DataLoader, torch.Generator, type)):
            return  # optimizer state and loaders are not what the method keeps
        elif isinstance(obj, Mapping):
            for value in obj.values():
                self.visit(value, depth - 1)
        elif isinstance(obj, (list, tuple, set, frozenset)):
            for value in obj:
                self.visit(value, depth - 1)
        elif hasattr(obj, "__dict__") and not inspect.isroutine(obj) and not _iterator(obj):
            for value in vars(obj).values():
                self.visit(value, depth - 1)

    def _tensor(self, tensor: torch.Tensor) -> None:
        if tensor.numel() == 0:
            return
        key = tensor.data_ptr()
        if key in self.model_storage or key in self.storage:
            return
        self.storage.add(key)
        if tensor.dim() >= 1 and tuple(tensor.shape[1:]) == self.input_shape:
            self.samples += tensor.shape[0]
        else:
            self.numbers += tensor.numel()


def _iterator(obj: Any) -> bool:
    # A data loader's iterator holds the loader's dataset again, and nothing of its own.
    return hasattr(obj, "__next__")
