"""Tests for cl_binvae.data: the real datasets, root resolution, validation and the download."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.datasets

from cl_binvae.suite.data import DataError, load_dataset, resolve_data_root


def _save(path: Path, n: int = 50, **overrides: np.ndarray) -> Path:
    """Write a small valid archive of (n, 12, 12, 3) images, with some arrays replaced."""
    rng = np.random.default_rng(0)
    arrays = {
        "x_train": rng.integers(0, 256, (n, 12, 12, 3), dtype=np.uint8),
        "y_train": (np.arange(n) % 4).astype(np.int32),
        "x_test": rng.integers(0, 256, (10, 12, 12, 3), dtype=np.uint8),
        "y_test": (np.arange(10) % 4).astype(np.int32),
    }
    arrays.update(overrides)
    np.savez(path, **arrays)
    return path


def test_mnist(mnist):
    assert mnist.x_train.shape == (60000, 28, 28) and mnist.x_test.shape == (10000, 28, 28)
    assert mnist.x_train.dtype == np.uint8
    assert mnist.y_train.dtype == np.int64 and mnist.y_test.dtype == np.int64
    expected = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert np.bincount(mnist.y_train).tolist() == expected
    assert mnist.image_shape == (1, 28, 28)
    assert mnist.n_classes == 10


def test_cifar10(data_root):
    cifar = load_dataset("cifar10", data_root)
    assert cifar.x_train.shape == (50000, 32, 32, 3) and cifar.x_test.shape == (10000, 32, 32, 3)
    assert cifar.image_shape == (3, 32, 32)
    assert cifar.y_train[:10].tolist() == [6, 9, 9, 4, 1, 1, 2, 7, 8, 3]


def test_resolve_data_root_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("CL_BINVAE_DATA", raising=False)
    assert resolve_data_root() == tmp_path / "cache" / "cl_binvae"
    monkeypatch.setenv("CL_BINVAE_DATA", str(tmp_path / "env"))
    assert resolve_data_root() == tmp_path / "env"
    assert resolve_data_root(tmp_path / "arg") == tmp_path / "arg"
    monkeypatch.delenv("CL_BINVAE_DATA")
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert resolve_data_root() == Path.home() / ".cache" / "cl_binvae"


def test_user_npz(tmp_path):
    data = load_dataset(str(_save(tmp_path / "shapes.npz")))
    assert data.name == "shapes"
    assert data.x_train.shape == (50, 12, 12, 3)
    assert data.y_train.dtype == np.int64 and data.y_test.dtype == np.int64
    assert data.image_shape == (3, 12, 12)
    assert data.n_classes == 4


@pytest.mark.parametrize(
    ("overrides", "word"),
    [
        ({"x_train": np.zeros((50, 12, 12, 3), np.float32)}, "uint8"),
        ({"y_train": -np.ones(50, np.int64)}, "negative"),
        ({"x_train": np.zeros((50, 144), np.uint8)}, "shape"),
        ({"y_train": np.zeros(49, np.int64)}, "mismatch"),
        ({"y_test": np.zeros(10, np.float64)}, "integers"),
        ({"x_test": np.zeros((10, 8, 8, 3), np.uint8)}, "image shape"),
    ],
)
def test_invalid_arrays(tmp_path, overrides, word):
    with pytest.raises(DataError, match=word):
        load_dataset(str(_save(tmp_path / "bad.npz", **overrides)))


def test_missing_key(tmp_path):
    path = tmp_path / "bad.npz"
    np.savez(path, x_train=np.zeros((5, 4, 4), np.uint8), y_train=np.zeros(5, np.int64))
    with pytest.raises(DataError, match="x_test, y_test"):
        load_dataset(str(path))


def test_corrupt_file(tmp_path):
    path = tmp_path / "noise.npz"
    path.write_bytes(np.random.default_rng(0).bytes(1000))
    with pytest.raises(DataError, match="not a valid .npz"):
        load_dataset(str(path))


def test_truncated_file(tmp_path):
    path = _save(tmp_path / "cut.npz")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(DataError, match="corrupt"):
        load_dataset(str(path))


def test_unknown_name_and_missing_file(tmp_path):
    with pytest.raises(DataError, match="mnist, cifar10"):
        load_dataset("imagenet")
    with pytest.raises(DataError, match="does not exist"):
        load_dataset(str(tmp_path / "absent.npz"))


def test_failed_download_leaves_nothing(monkeypatch, tmp_path):
    class Unreachable:
        def __init__(self, *args, **kwargs):
            raise RuntimeError("network unreachable")

    monkeypatch.setattr(torchvision.datasets, "MNIST", Unreachable)
    with pytest.raises(DataError, match="mnist.npz") as info:
        load_dataset("mnist", tmp_path)
    assert "network unreachable" in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_download_converts_and_stores(monkeypatch, tmp_path):
    roots = []

    class FakeMNIST:
        """Stands in for the network only: torchvision's attributes with tiny random data."""

        def __init__(self, root, train, download):
            roots.append(Path(root))
            n = 20 if train else 10  # every class in both splits
            self.data = torch.randint(0, 256, (n, 28, 28), dtype=torch.uint8)
            self.targets = torch.arange(n) % 10

    monkeypatch.setattr(torchvision.datasets, "MNIST", FakeMNIST)
    data = load_dataset("mnist", tmp_path / "root")
    assert [p.name for p in (tmp_path / "root").iterdir()] == ["mnist.npz"]
    assert all(r.parent == tmp_path / "root" for r in roots)  # scratch folder, since removed
    assert data.x_train.shape == (20, 28, 28) and data.x_train.dtype == np.uint8
    assert data.y_test.tolist() == list(range(10))
    assert load_dataset("mnist", tmp_path / "root").x_train.tolist() == data.x_train.tolist()


def test_npy_named_npz(tmp_path):
    path = tmp_path / "plain.npz"
    with path.open("wb") as f:
        np.save(f, np.zeros((5, 4, 4), np.uint8))
    with pytest.raises(DataError, match="single .npy array"):
        load_dataset(str(path))
