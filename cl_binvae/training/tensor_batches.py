"""Minibatches straight from tensors, so training pays for the math, not for data loading.

Avalanche's loaders fetch and collate every sample one by one, which costs more than a small
MLP's forward and backward pass. Here an experience's dataset is read out once into tensors
(on the training device when it fits) and minibatches are slices of a shuffled index
(``TensorBatches``), or of one shuffled index per class (``ClassBatches``).
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader, Dataset

Batch = list[torch.Tensor]


def dataset_tensors(dataset: Dataset, device: torch.device | str = "cpu", *,
                    eval_mode: bool = True) -> Batch:
    """Read a whole dataset of ``(x, y[, t, ...])`` samples into stacked tensors on ``device``.

    With ``eval_mode``, datasets with 'train'/'eval' transform groups (Avalanche's) are read
    through their 'eval' transforms, so no random augmentation is frozen into the tensors.
    """
    if eval_mode and hasattr(dataset, "eval"):
        dataset = dataset.eval()
    loader = DataLoader(dataset, batch_size=2048, shuffle=False,
                        collate_fn=getattr(dataset, "collate_fn", None))
    parts = [list(batch) for batch in loader]
    if not parts:
        raise ValueError("the experience's dataset is empty")
    return [torch.cat(column).to(device) for column in zip(*parts)]


class TensorBatches:
    """Minibatches of ``tensors`` (x, y, t, ...), sliced together along the first axis.

    With ``iterations`` set, yields exactly that many full minibatches, reshuffling after each
    pass over the data (the "iterations per experience" protocol); without it, one pass.
    """

    def __init__(
        self,
        tensors: Batch,
        batch_size: int,
        *,
        iterations: int | None = None,
        shuffle: bool = True,
        rng: torch.Generator | None = None,
    ) -> None:
        if batch_size <= 0:
            raise ValueError(f"batch_size must be > 0, got {batch_size}")
        if iterations is not None and iterations <= 0:
            raise ValueError(f"iterations must be > 0, got {iterations}")
        self.tensors = tensors
        self.batch_size = batch_size
        self.iterations = iterations
        self.shuffle = shuffle
        self.rng = rng
        self.n = len(tensors[0])

    def __len__(self) -> int:
        return self.iterations or math.ceil(self.n / self.batch_size)

    def __iter__(self) -> Iterator[Batch]:
        device = self.tensors[0].device
        if self.iterations is None:
            order = self._order().to(device)
            for start in range(0, self.n, self.batch_size):
                yield [t[order[start:start + self.batch_size]] for t in self.tensors]
            return
        # A full batch may straddle two shuffled passes when n is not a multiple of the batch.
        bs = min(self.batch_size, self.n)
        order, pos = self._order().to(device), 0
        for _ in range(self.iterations):
            if pos + bs > self.n:
                order, pos = torch.cat([order[pos:], self._order().to(device)]), 0
            idx = order[pos:pos + bs]
            pos += bs
            yield [t[idx] for t in self.tensors]

    def _order(self) -> torch.Tensor:
        if not self.shuffle:
            return torch.arange(self.n)
        return torch.randperm(self.n, generator=self.rng)


class ClassBatches:
    """Minibatches of ``tensors`` (x, y, t, ...) holding ``batch_size`` rows of every class:
    a class is a distinct row of ``labels`` (say, the (task, label) pairs), and each draws its
    rows as its own ``TensorBatches`` would, ``iterations`` times, reshuffled after each pass.
    """

    def __init__(self, tensors: Batch, labels: torch.Tensor, batch_size: int, *,
                 iterations: int, rng: torch.Generator | None = None) -> None:
        classes, inverse = labels.unique(dim=0, return_inverse=True)
        self.per_class = [TensorBatches([t[inverse == k] for t in tensors], batch_size,
                                        iterations=iterations, rng=rng)
                          for k in range(len(classes))]
        self.iterations = iterations

    def __len__(self) -> int:
        return self.iterations

    def __iter__(self) -> Iterator[Batch]:
        for parts in zip(*self.per_class, strict=True):
            yield [torch.cat(column) for column in zip(*parts, strict=True)]
