"""The continual-learning streams as Avalanche benchmarks, in the three scenarios.

Scenarios follow van de Ven & Tolias, "Three scenarios for continual learning":

- ``task``: task labels given; labels restart at 0 in every experience (multi-head solver);
- ``domain``: no task labels; labels restart at 0 in every experience (one shared head);
- ``class``: no task labels; global labels (one head over all classes seen).

Streams are built from in-memory float tensors in [0, 1], channels first, through Avalanche's
own ``nc_benchmark``, so experiences carry the usual attributes (``classes_in_this_experience``,
``task_label``...) and any unmodified Avalanche strategy runs on them.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

import numpy as np
import torch
from avalanche.benchmarks import NCScenario, nc_benchmark
from avalanche.benchmarks.utils import _make_taskaware_tensor_classification_dataset

from cl_binvae.suite.config import SCENARIOS, STREAMS, StreamConfig, source_dataset
from cl_binvae.suite.data import ArrayDataset, DataError, load_dataset, physical_memory

__all__ = ["SCENARIOS", "STREAMS", "Stream", "StreamConfig", "build_stream", "source_dataset"]


@dataclass
class Stream:
    """A built benchmark and what a solver or generator needs to know about it."""

    benchmark: NCScenario
    config: StreamConfig
    input_shape: tuple[int, int, int]
    n_outputs: int  # output units of a single-head solver (per head for task-IL)
    classes_per_experience: list[list[int]]  # original dataset labels, per experience
    permutations: list[np.ndarray] = field(default_factory=list)  # permuted-MNIST only

    @property
    def n_experiences(self) -> int:
        return len(self.classes_per_experience)


def images_to_tensor(x: np.ndarray) -> torch.Tensor:
    """uint8 images (N, H, W) or (N, H, W, C) -> float32 tensor (N, C, H, W) in [0, 1]."""
    t = torch.from_numpy(x)
    t = t.unsqueeze(1) if t.ndim == 3 else t.permute(0, 3, 1, 2)
    return t.float().div_(255.0).contiguous()


def pixel_permutations(n: int, n_pixels: int, seed: int) -> list[np.ndarray]:
    """``n`` seeded random permutations of ``n_pixels`` pixel positions."""
    rng = np.random.default_rng(seed)
    return [rng.permutation(n_pixels) for _ in range(n)]


def build_stream(config: StreamConfig, data_root: str | os.PathLike | None = None) -> Stream:
    """Load the data behind ``config`` and build its Avalanche benchmark."""
    data = load_dataset(source_dataset(config.name), data_root)
    if config.is_permuted:
        return _permuted_stream(data, config)
    return _split_stream(data, config)


def _tensor_dataset(x: torch.Tensor, y: np.ndarray):
    return _make_taskaware_tensor_classification_dataset(x, torch.from_numpy(y))


def _split_stream(data: ArrayDataset, config: StreamConfig) -> Stream:
    n_exp = config.experiences
    classes = np.unique(data.y_train)
    if n_exp > len(classes):
        raise DataError(f"--n-experiences {n_exp} is more than the {len(classes)} classes of "
                        f"{data.name}: at most {len(classes)}, one class per experience")
    if len(classes) % n_exp:
        raise DataError(f"{len(classes)} classes cannot be split evenly into {n_exp} experiences;"
                        f" choose an n_experiences that divides {len(classes)}")
    order = classes.tolist()
    if config.class_order_seed is not None:
        order = np.random.default_rng(config.class_order_seed).permutation(classes).tolist()
    relabel = config.scenario != "class"
    benchmark = nc_benchmark(
        _tensor_dataset(images_to_tensor(data.x_train), data.y_train),
        _tensor_dataset(images_to_tensor(data.x_test), data.y_test),
        n_exp,
        task_labels=config.scenario == "task",
        shuffle=False,
        fixed_class_order=order,
        class_ids_from_zero_in_each_exp=relabel,
    )
    per_exp = len(classes) // n_exp
    # class-IL keeps the original labels so results read naturally (digit 3 is class 3).
    n_outputs = per_exp if relabel else int(classes.max()) + 1
    groups = [order[i * per_exp:(i + 1) * per_exp] for i in range(n_exp)]
    return Stream(benchmark, config, data.image_shape, n_outputs, groups)


def _permuted_stream(data: ArrayDataset, config: StreamConfig) -> Stream:
    n_exp = config.experiences
    shape = data.image_shape
    # Every experience is a permuted float32 copy of the whole dataset: refuse, before any
    # allocation, a stream that would take more than half of this machine's memory.
    need = n_exp * (len(data.x_train) + len(data.x_test)) * math.prod(shape) * 4
    have = physical_memory()
    if have and need > have // 2:
        raise DataError(f"{n_exp} permuted experiences of {data.name} need {need / 2**30:.1f} "
                        f"GiB as float32 tensors, more than half of this machine's "
                        f"{have / 2**30:.1f} GiB; use fewer experiences")
    perms = pixel_permutations(n_exp, shape[1] * shape[2], config.seed)
    x_train, x_test = images_to_tensor(data.x_train), images_to_tensor(data.x_test)

    def permute(x: torch.Tensor, perm: np.ndarray) -> torch.Tensor:
        flat = x.flatten(2)[:, :, torch.from_numpy(perm)]
        return flat.view(x.shape).contiguous()

    # nc_benchmark offsets each dataset's labels by the classes before it: global labels
    # 0..10*n_exp-1 for class-IL, restarted at 0 per experience for task- and domain-IL.
    relabel = config.scenario != "class"
    benchmark = nc_benchmark(
        [_tensor_dataset(permute(x_train, p), data.y_train) for p in perms],
        [_tensor_dataset(permute(x_test, p), data.y_test) for p in perms],
        n_exp,
        task_labels=config.scenario == "task",
        shuffle=False,
        one_dataset_per_exp=True,
        class_ids_from_zero_in_each_exp=relabel,
    )
    n_cls = data.n_classes
    groups = [list(range(n_cls)) for _ in range(n_exp)]
    return Stream(benchmark, config, shape, n_cls if relabel else n_cls * n_exp, groups, perms)
