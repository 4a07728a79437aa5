"""Shared fixtures: the real data root, its datasets and a 4-digit slice of MNIST, and the
scripts under benchmarks/."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from cl_binvae.suite.data import ArrayDataset, load_dataset

SCRIPTS = Path(__file__).resolve().parents[1] / "benchmarks"
_INTERRUPTIBLE = ("import runpy, signal, sys; "
                  "signal.signal(signal.SIGINT, signal.default_int_handler); "
                  "sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')")


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


@pytest.fixture(scope="session")
def four_digits(tmp_path_factory: pytest.TempPathFactory, mnist: ArrayDataset) -> Path:
    """MNIST digits 0-3, 200 training and 60 test images each, as a user's .npz: two
    experiences of two classes."""
    def pick(x: np.ndarray, y: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        keep = np.concatenate([np.flatnonzero(y == c)[:n] for c in range(4)])
        return x[keep], y[keep]
    x_train, y_train = pick(mnist.x_train, mnist.y_train, 200)
    x_test, y_test = pick(mnist.x_test, mnist.y_test, 60)
    path = tmp_path_factory.mktemp("data") / "four_digits.npz"
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    return path


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


def _load_script(name: str):
    """``benchmarks/<name>.py`` as a module, so its ``main`` runs in-process (fast)."""
    spec = importlib.util.spec_from_file_location(f"benchmarks_{name}", SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # as an import would: dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def driver():
    """benchmarks/run.py as a module."""
    return _load_script("run")


@pytest.fixture(scope="session")
def tables():
    """benchmarks/make_tables.py as a module."""
    return _load_script("make_tables")


@pytest.fixture(scope="session")
def cli(data_root: Path) -> Callable[..., subprocess.CompletedProcess]:
    """``cli("run", *args)``: run ``benchmarks/run.py`` (or another script) in a subprocess
    with the real data root, and return the finished process."""
    def run(script: str, *args: str, **kwargs) -> subprocess.CompletedProcess:
        env = {**os.environ, "CL_BINVAE_DATA": str(data_root)}
        return subprocess.run([sys.executable, str(SCRIPTS / f"{script}.py"), *args],
                              capture_output=True, text=True, env=env, timeout=600,
                              check=False, **kwargs)
    return run


@pytest.fixture(scope="session")
def interrupt_driver(data_root: Path) -> Callable[..., tuple[int, str]]:
    """``interrupt_driver(out, pattern, *args)``: run benchmarks/run.py with ``--out out``
    until a file matching ``pattern`` appears under ``out`` (a checkpoint), then press Ctrl-C;
    return its exit code and stderr. Ctrl-C is restored in the child: a parent without job
    control (a background CI step) can hand SIGINT down as ignored."""
    def interrupt(out: Path, pattern: str, *args: str) -> tuple[int, str]:
        env = {**os.environ, "CL_BINVAE_DATA": str(data_root)}
        proc = subprocess.Popen([sys.executable, "-c", _INTERRUPTIBLE, str(SCRIPTS / "run.py"),
                                 *args, "--out", str(out)], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 300
        while not list(out.glob(pattern)) and time.time() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
        return proc.returncode, err
    return interrupt
