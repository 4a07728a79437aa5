"""Shared fixtures: the real data root and the datasets loaded from it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cl_binvae.data import ArrayDataset, load_dataset


@pytest.fixture(scope="session")
def data_root() -> Path:
    """Folder with the real mnist.npz and cifar10.npz (CI sets CL_BINVAE_DATA to it)."""
    return Path(os.environ.get("CL_BINVAE_DATA", "/work/shared/data"))


@pytest.fixture(scope="session")
def mnist(data_root: Path) -> ArrayDataset:
    """The real MNIST, loaded once per test session."""
    return load_dataset("mnist", data_root)
