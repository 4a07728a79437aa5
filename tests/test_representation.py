"""End-to-end checks of benchmarks/representation.py, run as the command line it is."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "representation.py"
COLUMNS = ["dataset", "arch", "variant", "r", "seed", "epochs", "train_size", "test_size",
           "iw_k", "status", "recon", "kl", "active_units", "collapsed", "sign_imbalance",
           "iw_ll", "probe_acc", "sec_per_epoch"]
FIGURES = ["metrics_vs_r.png", "latents_mnist.png", "reconstructions_mnist.png",
           "samples_mnist.png", "latents_cifar10.png", "reconstructions_cifar10.png",
           "samples_cifar10.png"]


def _run(*args: str | Path, timeout: float = 600) -> subprocess.CompletedProcess:
    # A guard against a hang, not a speed check: the quick run trains real models, and took
    # over 60 s beside two training runs on this 2-core machine.
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], check=False,
                          cwd=REPO, capture_output=True, text=True, timeout=timeout)


def test_quick_run_writes_every_output(tmp_path, data_root):
    out = tmp_path / "representation"
    done = _run("--quick", "--out", out, "--data-root", data_root, "--variants", "vae",
                "capacity", "--r", "0", "1")
    assert done.returncode == 0, done.stderr

    runs = pd.read_csv(out / "runs.csv")
    assert list(runs.columns) == COLUMNS
    assert len(runs) == 2 * 2 * 2  # datasets x variants x radii, one seed
    assert (runs["status"] == "ok").all()
    assert runs[COLUMNS[10:]].notna().all().all()
    assert set(runs["arch"]) == {"mlp", "conv"}

    summary = (out / "summary.md").read_text()
    header = next(line for line in summary.splitlines() if line.startswith("| dataset"))
    assert [c.strip() for c in header.strip("|").split("|")] == [
        "dataset", "variant", "r", "n", *COLUMNS[10:]]
    assert sum(line.startswith(("| mnist", "| cifar10")) for line in summary.splitlines()) == 8

    protocol = (out / "PROTOCOL.md").read_text()
    for needle in ("--quick", "torch", "python", "batch size", "lr", "seeds [0]",
                   "total wall time", "QUICK"):
        assert needle in protocol
    assert "still running" not in protocol

    for name in FIGURES:
        assert (out / name).stat().st_size > 0
    assert len(list((out / "raw").glob("*.npz"))) == 8
    assert not list(out.rglob(".*"))  # every atomic write's hidden temporary was moved into place


@pytest.mark.parametrize("args, needle", [
    (["--r", "-1"], "r=-1"),
    (["--variants", "wae"], "'wae'"),
    (["--epochs", "0"], "--epochs"),
])
def test_bad_flags_exit_2_with_one_line(tmp_path, args, needle):
    done = _run(*args, "--out", tmp_path)
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1 and needle in done.stderr
    assert "Traceback" not in done.stderr
    assert not list(tmp_path.iterdir())


def test_an_unwritable_out_exits_2_with_one_line(tmp_path, data_root):
    (tmp_path / "file").write_text("")
    done = _run("--quick", "--datasets", "mnist", "--data-root", data_root,
                "--out", tmp_path / "file" / "out")
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1 and "cannot write to --out" in done.stderr


def test_corrupt_data_exits_2_with_one_line(tmp_path):
    (tmp_path / "mnist.npz").write_bytes(b"not an archive")
    done = _run("--quick", "--datasets", "mnist", "--data-root", tmp_path,
                "--out", tmp_path / "out")
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1 and "corrupt" in done.stderr
    assert not (tmp_path / "out").exists()


def test_help():
    done = _run("--help")
    assert done.returncode == 0 and "--quick" in done.stdout
