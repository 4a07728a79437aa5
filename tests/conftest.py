"""Shared fixtures: the real data root and the datasets loaded from it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from cl_binvae.data import ArrayDataset, load_dataset


@pytest.fixture(scope="session")
def data_root() -> Path:
    """Folder with the real mnist.npz and cifar10.npz (CI sets CL_BINVAE_DATA to it)."""
    return Path(os.environ.get("CL_BINVAE_DATA", "/work/shared/data"))


@pytest.fixture(scope="session")
def mnist(data_root: Path) -> ArrayDataset:
    """The real MNIST, loaded once per test session."""
    return load_dataset("mnist", data_root)


@pytest.fixture(scope="session")
def cifar10(data_root: Path) -> ArrayDataset:
    """The real CIFAR-10, loaded once per test session."""
    return load_dataset("cifar10", data_root)


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Run the test on one CPU thread, then restore torch's setting.

    On a busy shared machine torch's thread pool spin-waits for busy cores: small models then
    train about 100x slower on two threads than on one.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
