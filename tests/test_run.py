"""The benchmark driver, end to end through its command line, on real split-MNIST."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

TINY = ["--stream", "split_mnist", "--iterations", "8", "--threads", "1", "--no-progress"]


def exit_code(main, argv: list[str]) -> int:
    """``main``'s return value, or the code of the SystemExit that argparse raises."""
    try:
        return main(argv)
    except SystemExit as exc:
        return exc.code


def run_dirs(out: Path) -> dict[str, Path]:
    return {json.loads((d / "config.json").read_text())["run"]["strategy"]: d
            for d in sorted(out.iterdir())}


def test_quick_run_writes_complete_run_directories(tmp_path, cli):
    out = tmp_path / "runs"
    result = cli("run", *TINY, "--strategy", "naive", "joint", "dgr", "binvae_gr", "--r", "0.5",
                     "--out", str(out))
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

    again = cli("run", *TINY, "--strategy", "naive", "--out", str(out))
    assert again.returncode == 0 and "done already" in again.stdout


@pytest.mark.parametrize("prior", [
    ["--prior", "mixture"],
    ["--prior", "fitted", "--prior-components", "5"],
    ["--prior", "codes", "--replay-labels", "prior"],
])
def test_resume_after_ctrl_c_gives_the_same_result(tmp_path, cli, interrupt_driver, prior):
    """Each prior's state (fitted mixture, class codes) resumes to the uninterrupted run."""
    args = [*TINY, "--iterations", "40", "--strategy", "binvae_gr", "--r", "0.3", *prior]
    interrupted, straight = tmp_path / "interrupted", tmp_path / "straight"
    code, err = interrupt_driver(interrupted, "*/progress.pt", *args)
    assert code == 130, err
    assert err.strip().splitlines()[-1].startswith("run.py: interrupted")
    [run_dir] = interrupted.iterdir()
    assert (run_dir / "progress.pt").exists() and not (run_dir / "metrics.json").exists()

    assert cli("run", *args, "--out", str(interrupted)).returncode == 0
    assert cli("run", *args, "--out", str(straight)).returncode == 0
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
    (["--strategy", "gdumb"], "unknown method 'gdumb'; registered: naive, ewc, si, lwf, er"),
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
    (["--threads", "100000"], "more than 4x this machine's"),
    (["--out", ""], "argument --out: must name a file or folder, not be empty"),
    (["--data-root", ""], "argument --data-root: must name a file or folder"),
    (["--stream", "digits\udcff.npz"], "argument --stream: digits\\xff.npz is not a UTF-8 name"),
    (["--n-experiences", "101"], "n_experiences must be in [1, 100]"),
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
    (["--replay-labels", "prior", "--prior", "codes", "--strategy", "dgr"],
     "dgr (r = 0, prior codes): at r = 0 the codes prior gives every class the same mode"),
    (["--prior", "fitted", "--prior-components", "5000"], "at most 1000"),
    (["--prior", "codes", "--stream", "permuted_mnist", "--n-experiences", "11",
      "--strategy", "naive", "binvae_gr"], "keeps at most 100 classes apart"),  # naive unrun
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


def test_unwritable_output_and_corrupt_data(tmp_path, cli):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    result = cli("run", *TINY, "--out", str(blocker / "runs"))
    assert result.returncode == 2 and "cannot write to --out" in result.stderr

    bad_root = tmp_path / "data"
    bad_root.mkdir()
    (bad_root / "mnist.npz").write_bytes(b"this is no zip archive")
    result = cli("run", *TINY, "--out", str(tmp_path / "runs"), "--data-root", str(bad_root))
    assert result.returncode == 2 and "mnist.npz" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_runs_on_a_local_ray(tmp_path, cli):
    pytest.importorskip("ray")
    out = tmp_path / "runs"
    result = cli("run", *TINY, "--strategy", "naive", "--seeds", "0", "1", "--workers", "2",
                     "--out", str(out))
    assert result.returncode == 0, result.stderr
    finished = sorted(d.name for d in out.iterdir() if (d / "metrics.json").exists())
    assert len(finished) == 2 and "s0-" in finished[0] and "s1-" in finished[1]


@pytest.mark.slow
def test_an_error_in_a_ray_worker_is_one_line_without_rays_traceback(tmp_path, cli):
    pytest.importorskip("ray")
    result = cli("run", *TINY, "--n-experiences", "3", "--strategy", "naive", "--workers", "2",
                 "--out", str(tmp_path / "runs"))
    assert result.returncode == 2
    # Ray logs its start on stderr too; the driver's own lines start with its name.
    [line] = [x for x in result.stderr.splitlines() if x.startswith("run.py")]
    assert line.startswith("run.py: error: 10 classes cannot be split evenly into 3 experiences")
    assert "Traceback" not in result.stderr and "ray::" not in line


@pytest.mark.parametrize("stream", ["split_mnist", "permuted_mnist", "split_cifar10"])
def test_cpu_preset_end_to_end_on_each_stream(tmp_path, cli, stream):
    """The cpu preset's protocol is what the run records and hashes; split-MNIST's cpu preset
    is its paper preset and is recorded as such."""
    from cl_binvae.suite.presets import protocol_for
    from cl_binvae.suite.run_config import RunConfig

    out = tmp_path / "runs"
    result = cli("run", "--stream", stream, "--preset", "cpu", "--iterations", "3",
                 "--n-experiences", "2", "--strategy", "naive", "dgr", "--threads", "1",
                 "--no-progress", "--out", str(out))
    assert result.returncode == 0, result.stderr
    dirs = run_dirs(out)
    config = json.loads((dirs["dgr"] / "config.json").read_text())
    preset = "paper" if stream == "split_mnist" else "cpu"
    assert config["run"]["preset"] == preset
    expected = protocol_for(preset, stream, iterations=3)
    assert config["protocol"]["solver"]["hidden"] == list(expected.solver.hidden)
    assert config["protocol"]["iterations"] == 3
    run = RunConfig(stream=stream, strategy="dgr", preset="cpu", iterations=3, n_experiences=2)
    assert config["run_id"] == run.run_id
    paper = RunConfig(stream=stream, strategy="dgr", iterations=3, n_experiences=2)
    assert (run.run_id == paper.run_id) == (stream == "split_mnist")


def test_a_run_records_the_commit_of_the_code_the_process_loaded(monkeypatch):
    """A sweep outlives commits: its runs record the commit read when the suite was
    imported, and never ask git again (which would name a checkout's newer HEAD)."""
    import subprocess

    from cl_binvae.suite.environment import environment

    loaded = environment("cpu")["git_commit"]

    def git_asked_again(*args, **kwargs):
        raise AssertionError(f"git asked again: {args}")

    monkeypatch.setattr(subprocess, "run", git_asked_again)
    assert environment("cpu")["git_commit"] == loaded
