"""The three streams, in the three scenarios, built from the real data."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from avalanche.evaluation.metrics import accuracy_metrics
from avalanche.training import Naive
from avalanche.training.plugins import EvaluationPlugin

from cl_binvae.suite.data import DataError
from cl_binvae.suite.solvers import build_solver
from cl_binvae.suite.streams import StreamConfig, build_stream, pixel_permutations

MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]


@pytest.fixture(scope="module")
def split_mnist(data_root):
    return {s: build_stream(StreamConfig("split_mnist", s), data_root)
            for s in ("class", "task", "domain")}


def _labels(exp) -> tuple[list[int], list[int]]:
    return (sorted(set(exp.dataset.targets)), sorted(set(exp.dataset.targets_task_labels)))


def test_split_mnist_sizes_match_label_counts(split_mnist):
    stream = split_mnist["class"]
    sizes = [len(e.dataset) for e in stream.benchmark.train_stream]
    assert sizes[0] == 5923 + 6742 == 12665
    assert sizes == [MNIST_TRAIN_COUNTS[2 * i] + MNIST_TRAIN_COUNTS[2 * i + 1] for i in range(5)]
    assert sum(len(e.dataset) for e in stream.benchmark.test_stream) == 10_000


@pytest.mark.parametrize("scenario, labels, tasks, n_outputs", [
    ("class", lambda i: [2 * i, 2 * i + 1], lambda i: [0], 10),
    ("task", lambda i: [0, 1], lambda i: [i], 2),
    ("domain", lambda i: [0, 1], lambda i: [0], 2),
])
def test_split_mnist_scenarios_label_as_defined(split_mnist, scenario, labels, tasks, n_outputs):
    stream = split_mnist[scenario]
    assert stream.n_outputs == n_outputs and stream.input_shape == (1, 28, 28)
    for i, (tr, te) in enumerate(zip(stream.benchmark.train_stream,
                                     stream.benchmark.test_stream)):
        assert _labels(tr) == (labels(i), tasks(i)) == _labels(te)
    x = stream.benchmark.train_stream[0].dataset[0][0]
    assert x.dtype == torch.float32 and x.shape == (1, 28, 28)
    assert 0.0 <= x.min() and x.max() <= 1.0


def test_split_mnist_images_keep_their_true_digit(split_mnist, mnist):
    """Relabelling in domain-IL keeps images with their labels (experiences are grouped by
    class, so the first image is the first 2 in MNIST)."""
    exp = split_mnist["domain"].benchmark.train_stream[1]  # digits 2 and 3
    x, y, _ = exp.dataset[0]
    first = np.flatnonzero(mnist.y_train == 2)[0]
    assert torch.equal(x[0], torch.from_numpy(mnist.x_train[first]).float() / 255)
    assert y == mnist.y_train[first] - 2


def test_seeded_class_order_is_reproducible(data_root):
    a = build_stream(StreamConfig("split_mnist", class_order_seed=3), data_root)
    b = build_stream(StreamConfig("split_mnist", class_order_seed=3), data_root)
    assert a.classes_per_experience == b.classes_per_experience
    assert a.classes_per_experience != [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]]
    assert _labels(a.benchmark.train_stream[0])[0] == sorted(a.classes_per_experience[0])


def test_permutations_are_seeded_bijections():
    perms = pixel_permutations(4, 784, seed=1)
    for p in perms:
        assert np.array_equal(np.sort(p), np.arange(784))
    again = pixel_permutations(4, 784, seed=1)
    other = pixel_permutations(4, 784, seed=2)
    assert all(np.array_equal(p, q) for p, q in zip(perms, again))
    assert not any(np.array_equal(p, q) for p, q in zip(perms, other))


@pytest.mark.parametrize("scenario, first_labels, n_outputs", [
    ("class", lambda i: list(range(10 * i, 10 * i + 10)), 30),
    ("domain", lambda i: list(range(10)), 10),
    ("task", lambda i: list(range(10)), 10),
])
def test_permuted_mnist(data_root, mnist, scenario, first_labels, n_outputs):
    stream = build_stream(StreamConfig("permuted_mnist", scenario, n_experiences=3, seed=5),
                          data_root)
    assert stream.n_outputs == n_outputs and stream.n_experiences == 3
    for i, exp in enumerate(stream.benchmark.train_stream):
        assert len(exp.dataset) == 60_000
        assert _labels(exp)[0] == first_labels(i)
    # nc_benchmark groups an experience by class: its first image is the first test zero.
    # Pixel k of the permuted image is pixel perm[k] of the original.
    x, _, _ = stream.benchmark.test_stream[2].dataset[0]
    first_zero = np.flatnonzero(mnist.y_test == 0)[0]
    original = mnist.x_test[first_zero].reshape(-1)[stream.permutations[2]] / 255
    assert np.allclose(x.reshape(-1).numpy(), original)


def test_split_cifar10(data_root):
    stream = build_stream(StreamConfig("split_cifar10", "class"), data_root)
    assert stream.input_shape == (3, 32, 32) and stream.n_outputs == 10
    for exp in stream.benchmark.train_stream:
        assert len(exp.dataset) == 10_000
    x = stream.benchmark.train_stream[0].dataset[0][0]
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32


def test_user_npz_builds_a_split_stream(tmp_path, data_root):
    rng = np.random.default_rng(0)
    path = tmp_path / "shapes.npz"
    np.savez(path, x_train=rng.integers(0, 256, (60, 12, 10, 3), dtype=np.uint8),
             y_train=np.repeat(np.arange(6), 10).astype(np.int32),
             x_test=rng.integers(0, 256, (12, 12, 10, 3), dtype=np.uint8),
             y_test=np.repeat(np.arange(6), 2))
    stream = build_stream(StreamConfig(str(path), "class", n_experiences=3))
    assert stream.input_shape == (3, 12, 10) and stream.n_outputs == 6
    assert [len(e.dataset) for e in stream.benchmark.train_stream] == [20, 20, 20]
    _train_one_short_epoch(stream)


@pytest.mark.parametrize("name, kwargs, match", [
    ("split_fashion", {}, "unknown stream"),
    ("split_mnist", {"scenario": "online"}, "unknown scenario"),
    ("split_mnist", {"n_experiences": 0}, "n_experiences"),
])
def test_bad_stream_config(name, kwargs, match):
    with pytest.raises(ValueError, match=match):
        StreamConfig(name, **kwargs)


def test_experience_count_must_divide_classes(data_root):
    with pytest.raises(DataError, match="cannot be split evenly"):
        build_stream(StreamConfig("split_mnist", n_experiences=3), data_root)


def test_missing_data_root_is_a_clear_error(tmp_path, monkeypatch):
    import torchvision

    class Offline:
        def __init__(self, *args, **kwargs):
            raise RuntimeError("network unreachable")

    monkeypatch.setattr(torchvision.datasets, "MNIST", Offline)
    with pytest.raises(DataError, match="mnist.npz"):
        build_stream(StreamConfig("split_mnist"), tmp_path)
    assert list(tmp_path.iterdir()) == []


def _train_one_short_epoch(stream, n: int = 256) -> None:
    """An unmodified Avalanche Naive strategy, one epoch on a slice of each experience."""
    torch.manual_seed(0)
    n_tasks = stream.n_experiences if stream.config.scenario == "task" else 1
    model = build_solver(stream.input_shape, stream.n_outputs, n_tasks)
    evaluator = EvaluationPlugin(accuracy_metrics(stream=True), loggers=[])
    strategy = Naive(model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.01),
                     train_mb_size=64, eval_mb_size=256, evaluator=evaluator)
    for exp in stream.benchmark.train_stream:
        short = copy.copy(exp)
        short.dataset = exp.dataset.subset(range(min(n, len(exp.dataset))))
        strategy.train(short)
    results = strategy.eval(stream.benchmark.test_stream[:1])
    accuracy = [v for k, v in results.items() if k.startswith("Top1_Acc_Stream/eval_phase")]
    assert len(accuracy) == 1 and 0.0 <= accuracy[0] <= 1.0


@pytest.mark.parametrize("name, scenario", [
    ("split_mnist", "class"), ("split_mnist", "task"), ("split_mnist", "domain"),
    ("permuted_mnist", "class"), ("split_cifar10", "class"),
])
def test_naive_trains_on_each_stream(data_root, name, scenario):
    n_exp = 2 if name == "permuted_mnist" else None
    _train_one_short_epoch(build_stream(StreamConfig(name, scenario, n_experiences=n_exp),
                                        data_root))
