"""The benchmark driver, end to end through its command line, on real split-MNIST."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

RUN = Path(__file__).resolve().parents[1] / "benchmarks" / "run.py"
# A parent without job control (a background CI step) can hand SIGINT down as ignored, and
# Python then keeps ignoring it: this wrapper restores Ctrl-C before running the driver.
INTERRUPTIBLE = ("import runpy, signal, sys; "
                 "signal.signal(signal.SIGINT, signal.default_int_handler); "
                 "sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')")
TINY = ["--stream", "split_mnist", "--iterations", "8", "--threads", "1", "--no-progress"]


@pytest.fixture(scope="module")
def driver():
    """benchmarks/run.py as a module, so bad-input checks run in-process (fast)."""
    spec = importlib.util.spec_from_file_location("run_driver", RUN)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def exit_code(main, argv: list[str]) -> int:
    """``main``'s return value, or the code of the SystemExit that argparse raises."""
    try:
        return main(argv)
    except SystemExit as exc:
        return exc.code


def run_cli(*args: str, data_root: Path, **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "CL_BINVAE_DATA": str(data_root)}
    return subprocess.run([sys.executable, str(RUN), *args], capture_output=True, text=True,
                          env=env, timeout=600, check=False, **kwargs)


def run_dirs(out: Path) -> dict[str, Path]:
    return {json.loads((d / "config.json").read_text())["run"]["strategy"]: d
            for d in sorted(out.iterdir())}


def test_quick_run_writes_complete_run_directories(tmp_path, data_root):
    out = tmp_path / "runs"
    result = run_cli(*TINY, "--strategy", "naive", "joint", "dgr", "binvae_gr", "--r", "0.5",
                     "--out", str(out), data_root=data_root)
    assert result.returncode == 0, result.stderr
    assert "binvae_gr r=0.5" in result.stdout and "final accuracy" in result.stdout
    dirs = run_dirs(out)
    assert set(dirs) == {"naive", "joint", "dgr", "binvae_gr"}

    config = json.loads((dirs["binvae_gr"] / "config.json").read_text())
    assert config["run"]["r"] == 0.5 and config["protocol"]["generator"]["r"] == 0.5
    assert config["protocol"]["iterations"] == 8
    assert {"git_commit", "versions", "device"} <= set(config)
    assert config["versions"]["avalanche-lib"].startswith("0.6")

    matrix = pd.read_csv(dirs["binvae_gr"] / "accuracy_matrix.csv")
    assert list(matrix.columns) == ["after"] + [f"exp_{j}" for j in range(5)]
    acc = matrix.drop(columns="after").to_numpy()
    assert acc.shape == (5, 5) and ((0 <= acc) & (acc <= 1)).all()
    metrics = json.loads((dirs["binvae_gr"] / "metrics.json").read_text())
    assert metrics["final_avg_accuracy"] == pytest.approx(acc[-1].mean())
    assert metrics["bwt"] == pytest.approx(np.mean([acc[4, j] - acc[j, j] for j in range(4)]))
    diagnostics = pd.read_csv(dirs["binvae_gr"] / "diagnostics.csv")
    assert list(diagnostics["experience"]) == [0, 1, 2, 3, 4]
    assert all((dirs["dgr"] / f"samples_exp{i}.png").stat().st_size > 0 for i in range(5))
    assert not any(d.joinpath("progress.pt").exists() for d in dirs.values())

    joint = pd.read_csv(dirs["joint"] / "accuracy_matrix.csv")
    assert list(joint["after"]) == ["joint"]
    assert json.loads((dirs["joint"] / "metrics.json").read_text())["avg_forgetting"] is None

    again = run_cli(*TINY, "--strategy", "naive", "--out", str(out), data_root=data_root)
    assert again.returncode == 0 and "done already" in again.stdout


def test_resume_after_ctrl_c_gives_the_same_result(tmp_path, data_root):
    args = [*TINY, "--iterations", "40", "--strategy", "binvae_gr", "--r", "0.3"]
    interrupted, straight = tmp_path / "interrupted", tmp_path / "straight"
    env = {**os.environ, "CL_BINVAE_DATA": str(data_root)}
    proc = subprocess.Popen([sys.executable, "-c", INTERRUPTIBLE, str(RUN), *args,
                             "--out", str(interrupted)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while not list(interrupted.glob("*/progress.pt")) and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1].startswith("run.py: interrupted")
    [run_dir] = interrupted.iterdir()
    assert (run_dir / "progress.pt").exists() and not (run_dir / "metrics.json").exists()

    assert run_cli(*args, "--out", str(interrupted), data_root=data_root).returncode == 0
    assert run_cli(*args, "--out", str(straight), data_root=data_root).returncode == 0
    [other] = straight.iterdir()
    assert other.name == run_dir.name
    for name in ("accuracy_matrix.csv", "diagnostics.csv"):
        assert (run_dir / name).read_text() == (other / name).read_text()
    resumed = json.loads((run_dir / "metrics.json").read_text())
    uninterrupted = json.loads((other / "metrics.json").read_text())
    resumed.pop("wall_clock_s"), uninterrupted.pop("wall_clock_s")
    assert resumed == uninterrupted


@pytest.mark.parametrize("args, message", [
    (["--stream", "split_fashion"], "unknown stream"),
    (["--strategy", "icarl"], "unknown method 'icarl'; registered: naive, er, avalanche_gr"),
    (["--scenario", "online"], "invalid choice"),
    (["--r", "-0.5"], "r must be finite and >= 0"),
    (["--r", "nan"], "r must be finite"),
    (["--seeds"], "expected at least one argument"),
    (["--seeds", "1", "1"], "duplicates"),
    (["--strategy", "avalanche_gr", "--scenario", "task"], "supports the scenarios class, domain"),
    (["--distill", "--strategy", "naive", "--workers", "0"], "--workers"),
    (["--stream", "/no/such/file.npz"], "does not exist"),
    (["--device", "tpu"], "--device"),
    (["--device", "cudafoo"], "--device"),
    (["--threads", "0"], "--threads"),
    (["--seeds", "-1"], "seeds must be in"),
    (["--n-experiences", "3"], "cannot be split evenly"),
    (["--n-experiences", "0"], "n_experiences"),
    (["--preset", "fast"], "invalid choice"),
    (["--preset", "quick"], "quick preset's only change"),
    (["--preset", "cpu", "--stream", "permuted_mnist", "--iterations", "1000"],
     "preset's own number"),
    (["--r", "1e300"], "must be <= 1000"),
    (["--prior", "gmm"], "invalid choice"),
    (["--prior", "fitted", "--prior-components", "0"], "K >= 1"),
    (["--replay-labels", "prior", "--strategy", "dgr"], "needs --prior codes"),
    (["--active-classes", "--scenario", "task", "--strategy", "dgr"], "class-IL only"),
    (["--logger", "slack"], "invalid choice"),
])
def test_bad_input_exits_2_with_one_line(tmp_path, data_root, monkeypatch, capsys, driver,
                                         args, message):
    monkeypatch.setenv("CL_BINVAE_DATA", str(data_root))
    assert exit_code(driver.main, [*TINY, "--out", str(tmp_path / "runs"), *args]) == 2, \
        capsys.readouterr().err
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], lines
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_unwritable_output_and_corrupt_data(tmp_path, data_root):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    result = run_cli(*TINY, "--out", str(blocker / "runs"), data_root=data_root)
    assert result.returncode == 2 and "cannot write to --out" in result.stderr

    bad_root = tmp_path / "data"
    bad_root.mkdir()
    (bad_root / "mnist.npz").write_bytes(b"this is no zip archive")
    result = run_cli(*TINY, "--out", str(tmp_path / "runs"), data_root=bad_root)
    assert result.returncode == 2 and "mnist.npz" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_runs_on_a_local_ray(tmp_path, data_root):
    pytest.importorskip("ray")
    out = tmp_path / "runs"
    result = run_cli(*TINY, "--strategy", "naive", "--seeds", "0", "1", "--workers", "2",
                     "--out", str(out), data_root=data_root)
    assert result.returncode == 0, result.stderr
    finished = sorted(d.name for d in out.iterdir() if (d / "metrics.json").exists())
    assert len(finished) == 2 and "s0-" in finished[0] and "s1-" in finished[1]
