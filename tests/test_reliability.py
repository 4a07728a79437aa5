"""What a hostile but realistic user does to run directories, data files and flags: every bad
input ends in one line and exit code 2 with nothing written, and every kill or damage of a
run directory is repaired by a plain rerun with the uninterrupted numbers."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from cl_binvae.suite.atomic import atomic_path, remove_orphans, write_text
from cl_binvae.suite.run_config import run_id_of

REPO = Path(__file__).resolve().parents[1]
RUN = REPO / "benchmarks" / "run.py"
TINY = ["--stream", "split_mnist", "--iterations", "6", "--n-experiences", "2", "--threads",
        "1", "--no-progress"]


@pytest.fixture(autouse=True)
def real_data(data_root, monkeypatch):
    """The driver finds the real data through the environment, as on the command line."""


@pytest.fixture(scope="module")
def finished(tmp_path_factory, data_root, driver):
    """Finished naive, dgr and binvae_gr runs, made once; tests copy them before damaging."""
    out = tmp_path_factory.mktemp("finished")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CL_BINVAE_DATA", str(data_root))
        assert driver.main([*TINY, "--strategy", "naive", "dgr", "binvae_gr", "--out",
                            str(out)]) == 0
    return out


def copy_runs(source: Path, target: Path) -> Path:
    subprocess.run(["cp", "-r", str(source), str(target)], check=True)
    return target


def one_line_error(capsys, code: int) -> str:
    assert code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def numbers(run_dir: Path) -> tuple[str, dict]:
    metrics = json.loads((run_dir / "metrics.json").read_text())
    metrics.pop("wall_clock_s")
    return (run_dir / "accuracy_matrix.csv").read_text(), metrics


# -- the table script --------------------------------------------------------------------------
@pytest.mark.parametrize("layout, message", [
    ("out_is_file", "cannot write to"),
    ("out_under_file", "cannot write to"),
    ("figures_is_file", "cannot write to"),
])
def test_tables_refuse_unwritable_outputs_before_writing(tables, finished, tmp_path, capsys,
                                                         layout, message):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file")
    out = {"out_is_file": blocker, "out_under_file": blocker / "results",
           "figures_is_file": tmp_path / "results"}[layout]
    if layout == "figures_is_file":
        out.mkdir()
        (out / "figures").write_text("a file")
    code = tables.main(["--runs", str(finished), "--out", str(out)])
    assert message in one_line_error(capsys, code)
    if layout == "figures_is_file":
        assert sorted(p.name for p in out.iterdir()) == ["figures"]  # no table was written


@pytest.mark.parametrize("flag", ["--out", "--runs", "--readme", "--import"])
def test_tables_refuse_empty_and_non_utf8_paths(tables, finished, capsys, flag):
    for value in ("", "results\udcff"):
        with pytest.raises(SystemExit) as exit_info:
            tables.main(["--runs", str(finished), flag, value])
        line = one_line_error(capsys, exit_info.value.code)
        assert f"argument {flag}: " in line and ("not be empty" if not value else
                                                 "results\\xff is not a UTF-8 name") in line


def test_tables_unknown_flag_is_one_line(tables, capsys):
    with pytest.raises(SystemExit) as exit_info:
        tables.main(["--colour"])
    assert "unrecognized arguments: --colour" in one_line_error(capsys, exit_info.value.code)


def test_tables_skip_damaged_runs_and_draw_around_a_truncated_png(tables, finished, tmp_path,
                                                                   capsys):
    runs = copy_runs(finished, tmp_path / "runs")
    [naive] = runs.glob("*naive*")
    [dgr] = runs.glob("*dgr*")
    samples = dgr / "samples_exp0.png"
    samples.write_bytes(samples.read_bytes()[:100])  # truncated
    broken = copy_runs(naive, runs / f"unreadable-{naive.name[-12:]}")
    (broken / "metrics.json").unlink()
    (broken / "metrics.json").mkdir()  # reading it fails with an OSError, like no permission
    text_in_numbers = copy_runs(dgr, runs / f"text_in_diagnostics-{dgr.name[-12:]}")
    diagnostics = text_in_numbers / "diagnostics.csv"
    header, first, *rest = diagnostics.read_text().splitlines()
    diagnostics.write_text("\n".join([header, first.replace(",", ",oops,", 1), *rest]))
    config = json.loads((naive / "config.json").read_text())
    config["protocol"]["lr"] /= 10  # as if the preset's learning rate changed since
    config["run_id"] = run_id_of(config["run"], config["protocol"])  # as it ran then
    older = copy_runs(naive, runs / f"older_preset-{config['run_id']}")
    (older / "config.json").write_text(json.dumps(config))
    assert tables.main(["--runs", str(runs), "--out", str(tmp_path / "out")]) == 0
    err = capsys.readouterr().err
    assert "skipping" in err and "unreadable" in err
    assert "samples_exp0.png is unreadable" in err
    assert f"{text_in_numbers.name}: diagnostics.csv is unreadable" in err
    assert f"{older.name}: config.json: made under an earlier paper preset" in err
    figures = tmp_path / "out" / "figures"
    assert (figures / "split_mnist_class_paper_it6_T2_samples_fitted.png").exists()


def tables_before(finished: Path, tables, tmp_path: Path) -> tuple[Path, Path, dict]:
    """Tables of the naive run alone in ``out``; a runs root with all three runs; and
    ``out``'s files, byte by byte."""
    runs = copy_runs(finished, tmp_path / "runs")
    alone = tmp_path / "alone"
    alone.mkdir()
    [naive] = runs.glob("*-naive-*")
    copy_runs(naive, alone / naive.name)
    out = tmp_path / "out"
    assert tables.main(["--runs", str(alone), "--out", str(out)]) == 0
    return runs, out, files_of(out)


def files_of(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


def test_tables_interrupted_midway_leave_the_previous_ones_whole(tables, finished, tmp_path,
                                                                 capsys, monkeypatch):
    runs, out, before = tables_before(finished, tables, tmp_path)
    capsys.readouterr()
    from cl_binvae.report import figures

    def interrupted(runs, folder, note):  # Ctrl-C once the tables are written, mid-figures
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "half.png").write_bytes(b"half a figure")
        raise KeyboardInterrupt

    monkeypatch.setattr(figures, "write_figures", interrupted)
    assert tables.main(["--runs", str(runs), "--out", str(out)]) == 130
    assert capsys.readouterr().err == ("make_tables.py: interrupted; the previous tables are as "
                                       "they were\n")
    assert files_of(out) == before and not list(out.rglob(".*"))


def test_tables_killed_by_sigterm_leave_the_previous_ones_whole(tables, finished, tmp_path,
                                                                 data_root):
    runs, out, before = tables_before(finished, tables, tmp_path)
    env = {**os.environ, "CL_BINVAE_DATA": str(data_root)}
    proc = subprocess.Popen([sys.executable, str(REPO / "benchmarks" / "make_tables.py"),
                             "--runs", str(runs), "--out", str(out)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not list(out.glob(".staging*/*")) and time.time() < deadline:
        time.sleep(0.01)  # until it is writing
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143
    assert err == "make_tables.py: interrupted; the previous tables are as they were\n"
    assert files_of(out) == before and not list(out.rglob(".*"))


def test_what_a_killed_make_tables_left_is_removed_and_nothing_else(tables, finished,
                                                                    tmp_path):
    runs, out, _ = tables_before(finished, tables, tmp_path)
    left = [out / ".staging.cl_binvae-tmp-abcd1234", out / ".table_x.tmp-abcd1234.md",
            out / "figures" / ".a.png.cl_binvae-tmp-abcd1234.png"]
    mine = [out / ".staging-notes", out / ".notes.tmp-abcd1234.md", out / "figures" / ".mine"]
    left[0].mkdir()
    (left[0] / "table.md").write_text("half")
    mine[0].mkdir()
    for path in [*left[1:], *mine[1:]]:
        path.write_text("x")
    assert tables.main(["--runs", str(runs), "--out", str(out)]) == 0
    assert not any(path.exists() for path in left) and all(path.exists() for path in mine)


def test_tables_name_an_unregistered_method_and_the_import_flag(tables, finished, tmp_path,
                                                                capsys):
    runs = tmp_path / "runs"
    runs.mkdir()
    for seed, source in enumerate(finished.glob("*-naive-*")):
        mine = copy_runs(source, runs / f"{source.name}{seed}")
        config = json.loads((mine / "config.json").read_text())
        config["run"]["strategy"] = "si_mine"  # as a user's method file would have it
        (mine / "config.json").write_text(json.dumps(config))
    code = tables.main(["--runs", str(runs), "--out", str(tmp_path / "out")])
    assert one_line_error(capsys, code) == (
        f"make_tables.py: error: runs root {runs} holds no finished run but runs of methods "
        "not registered here: si_mine (1 runs); give the file that registers them with "
        "--import")
    assert not [p for p in (tmp_path / "out").rglob("*") if p.is_file()]


def test_a_write_killed_midway_keeps_the_previous_file(tmp_path):
    table = tmp_path / "table.md"
    write_text(table, "the good table\n")
    with pytest.raises(KeyboardInterrupt), atomic_path(table) as tmp:
        tmp.write_text("half a tab")
        raise KeyboardInterrupt  # killed before the rename
    assert table.read_text() == "the good table\n"
    assert list(tmp_path.iterdir()) == [table]


def test_orphans_of_killed_writes_are_removed_and_nothing_else(tmp_path):
    from cl_binvae.suite.rundir import written_here

    with pytest.raises(KeyboardInterrupt), atomic_path(tmp_path / "metrics.json") as tmp:
        os.link(tmp, tmp_path / tmp.name.replace(".metrics", ".copy"))  # a write killed -9
        raise KeyboardInterrupt
    [orphan] = [p.name for p in tmp_path.iterdir()]
    earlier = ".progress.tmp-a1b2c3d4.pt"  # as atomic_path named a run's checkpoint before
    # A user's own hidden files, some close to the suite's temporary names: all kept.
    users = [".lock", "metrics.json", "progress.pt", ".notes-prelim01",
             ".config-original.json", ".config-k9x7q2z1.json", ".notes.tmp-a1b2c3d4.txt",
             ".metrics.json.cl_binvae-tmp-a1b2c3d4.csv", ".a.cl_binvae-tmp-TOOLONG99.txt"]
    for name in [earlier, *users]:
        (tmp_path / name).write_text("x")
    removed = remove_orphans(tmp_path, earlier=written_here)
    assert sorted(p.name for p in removed) == sorted([orphan, earlier])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(users)


# -- the driver on damaged run directories -----------------------------------------------------
@pytest.mark.parametrize("damage", ["truncated_metrics", "no_matrix", "bad_config"])
def test_a_damaged_finished_run_is_reported_and_rerun(driver, finished, tmp_path, capsys,
                                                      damage):
    runs = copy_runs(finished, tmp_path / "runs")
    [run] = runs.glob("*naive*")
    before = numbers(run)
    if damage == "truncated_metrics":
        (run / "metrics.json").write_text('{"final_avg_accu')
    elif damage == "no_matrix":
        (run / "accuracy_matrix.csv").unlink()
    else:
        (run / "config.json").write_text("[]")
    users = {".notes-prelim01": "mine", ".config-original.json": "{}"}  # the user's own
    for name, text in users.items():
        (run / name).write_text(text)
    assert driver.main([*TINY, "--strategy", "naive", "dgr", "--out", str(runs)]) == 0
    err = capsys.readouterr().err
    assert str(run) in err and "running it again" in err
    assert numbers(run) == before
    assert {name: (run / name).read_text() for name in users} == users


def edit_json(path: Path, **changes) -> None:
    path.write_text(json.dumps(json.loads(path.read_text()) | changes, indent=2))


@pytest.mark.parametrize("damage, message", [
    ("metrics_edited", "metrics.json and accuracy_matrix.csv disagree: avg_forgetting is 0"),
    ("matrix_row_edited", "metrics.json and accuracy_matrix.csv disagree"),
    ("another_runs_files", "config.json: it records run"),
    ("config_edited", "config.json: its run and protocol do not hash to its run_id"),
])
def test_files_that_parse_but_disagree_are_reported_and_rerun(driver, finished, tmp_path,
                                                              capsys, damage, message):
    """A finished run's files must agree with each other and with the directory's name."""
    runs = copy_runs(finished, tmp_path / "runs")
    strategy = "binvae_gr" if damage == "config_edited" else "naive"
    [run] = runs.glob(f"*-{strategy}-*")
    before = numbers(run)
    if damage == "metrics_edited":
        edit_json(run / "metrics.json", avg_forgetting=0.0, bwt=0.0)
    elif damage == "matrix_row_edited":
        header, first, *rest = (run / "accuracy_matrix.csv").read_text().splitlines()
        cells = first.split(",")
        first = ",".join([cells[0], f"{1 - float(cells[1]):.6f}", *cells[2:]])
        (run / "accuracy_matrix.csv").write_text("\n".join([header, first, *rest]) + "\n")
    elif damage == "another_runs_files":
        [dgr] = runs.glob("*-dgr-*")
        for name in ("config.json", "accuracy_matrix.csv", "metrics.json"):
            (run / name).write_bytes((dgr / name).read_bytes())
    else:  # another r, in the run and in its protocol, as a user might try
        config = json.loads((run / "config.json").read_text())
        config["run"]["r"] = config["protocol"]["generator"]["r"] = 0.5
        (run / "config.json").write_text(json.dumps(config, indent=2))
    assert driver.main([*TINY, "--strategy", strategy, "--out", str(runs)]) == 0
    [line] = [x for x in capsys.readouterr().err.splitlines() if "running it again" in x]
    assert line.startswith(f"{run}: {message}")
    assert numbers(run) == before


def test_a_corrupt_checkpoint_means_starting_over_with_the_same_numbers(driver, finished,
                                                                       tmp_path, capsys):
    runs = copy_runs(finished, tmp_path / "runs")
    [run] = runs.glob("*dgr*")
    before = numbers(run)
    (run / "metrics.json").unlink()
    (run / "progress.pt").write_bytes(b"PK\x03\x04 not a checkpoint")
    (run / ".progress.tmp-zzzzzzzz.pt").write_bytes(b"\0" * 1000)  # a killed write's orphan
    assert driver.main([*TINY, "--strategy", "dgr", "--out", str(runs)]) == 0
    assert "cannot resume" in capsys.readouterr().err
    assert numbers(run) == before
    assert not (run / ".progress.tmp-zzzzzzzz.pt").exists()
    assert not (run / "progress.pt").exists()


def test_a_checkpoint_of_another_run_or_of_nothing_is_not_resumed(tmp_path, data_root):
    from cl_binvae.suite import checkpoint
    from cl_binvae.suite.experiment import _resume_problem, build_strategy
    from cl_binvae.suite.run_config import RunConfig
    from cl_binvae.suite.streams import build_stream

    run = RunConfig(strategy="naive", iterations=6, n_experiences=2)
    stream = build_stream(run.stream_config(), data_root)
    strategy = build_strategy(run, stream, "cpu")
    checkpoint.save(tmp_path / "progress.pt", "0123456789ab", strategy, checkpoint.Progress())
    with pytest.raises(ValueError, match="checkpoint of run 0123456789ab, not"):
        checkpoint.load(tmp_path / "progress.pt", run.run_id, strategy, "cpu")
    checkpoint.save(tmp_path / "progress.pt", run.run_id, strategy, checkpoint.Progress())
    assert _resume_problem(run, stream, "cpu", tmp_path / "progress.pt") == \
        "cannot resume (the checkpoint holds no finished experience)"


def test_sigterm_stops_the_driver_with_its_own_line_last(finished, tmp_path, data_root):
    out = tmp_path / "runs"
    env = {**os.environ, "CL_BINVAE_DATA": str(data_root)}
    args = [sys.executable, str(RUN), *TINY, "--iterations", "40", "--strategy", "dgr",
            "--out", str(out)]
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.time() + 300
    while not list(out.glob("*/progress.pt")) and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143
    assert err.strip().splitlines()[-1].startswith("run.py: interrupted; finished experiences")
    assert "Traceback" not in err
    [run] = out.iterdir()
    assert (run / "progress.pt").exists() and not list(run.glob(".*"))


def test_kill_9_mid_run_then_rerun_gives_the_uninterrupted_numbers(finished, tmp_path,
                                                                   data_root):
    out = tmp_path / "runs"
    env = {**os.environ, "CL_BINVAE_DATA": str(data_root)}
    args = [sys.executable, str(RUN), *TINY, "--iterations", "40", "--strategy", "dgr",
            "--out", str(out)]
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not list(out.glob("*/progress.pt")) and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    [run] = out.iterdir()
    assert not (run / "metrics.json").exists()
    assert subprocess.run(args, env=env, capture_output=True, check=False).returncode == 0
    straight = tmp_path / "straight"
    assert subprocess.run([*args[:-1], str(straight)], env=env, capture_output=True,
                          check=False).returncode == 0
    assert numbers(run) == numbers(straight / run.name)
    assert [p.name for p in run.iterdir() if p.name.startswith(".")] == []


RESUMABLE = '''
import os

import torch
from avalanche.core import SupervisedPlugin

import cl_binvae


class CrashOnce(SupervisedPlugin):
    """Stops the run at its third experience while the file CRASH exists; with ``hidden``,
    keeps state outside what a checkpoint saves (halving the weights from the second
    experience on, as a regularizer's memory of earlier experiences would change them)."""

    def __init__(self, hidden):
        super().__init__()
        self.hidden, self.seen = hidden, 0

    def before_training_exp(self, strategy, **kwargs):
        if strategy.clock.train_exp_counter == 2 and os.path.exists(CRASH):
            raise RuntimeError("crashed on purpose")
        if self.hidden and self.seen:
            with torch.no_grad():
                for weight in strategy.model.parameters():
                    weight.mul_(0.5)

    def after_training_exp(self, strategy, **kwargs):
        self.seen += 1


@cl_binvae.register_method("honest", resumable=True)
def honest(ctx):
    """all its state checkpoints"""
    return ctx.tensor_strategy(plugins=[CrashOnce(hidden=False)])


@cl_binvae.register_method("liar", resumable=True)
def liar(ctx):
    """says it resumes, but keeps state of its own"""
    return ctx.tensor_strategy(plugins=[CrashOnce(hidden=True)])
'''


@pytest.mark.parametrize("method", ["honest", "liar"])
def test_a_method_that_says_it_resumes_is_checked(cli, tmp_path, method):
    crash = tmp_path / "CRASH"
    (tmp_path / "mine.py").write_text(f"CRASH = {str(crash)!r}\n" + RESUMABLE)
    args = [*TINY, "--n-experiences", "5", "--import", str(tmp_path / "mine.py"),
            "--strategy", method]
    crash.touch()
    first = cli("run", *args, "--out", str(tmp_path / "runs"))
    assert first.returncode == 2 and "crashed on purpose" in first.stderr
    [run] = (tmp_path / "runs").iterdir()
    assert (run / "progress.pt").exists() and (run / "progress_before.pt").exists()
    crash.unlink()
    resumed = cli("run", *args, "--out", str(tmp_path / "runs"))
    assert resumed.returncode == 0, resumed.stderr
    said = [line for line in resumed.stderr.splitlines() if "starting over" in line]
    if method == "liar":
        assert said == [(f"{run / 'progress.pt'}: method liar is registered resumable=True, "
                         "but its experience 1 retrained from the checkpoint before it ends in "
                         "another state (model.trunk.1.weight): some of its state is not in "
                         "what a checkpoint saves (register it resumable=False, or give that "
                         "state a state_dict); starting over")]
    else:
        assert said == []
    assert cli("run", *args, "--out", str(tmp_path / "straight")).returncode == 0
    assert numbers(run) == numbers(tmp_path / "straight" / run.name)
    assert not list(run.glob("progress*"))


def test_a_second_driver_skips_a_run_another_one_holds(driver, tmp_path, data_root, capsys):
    from cl_binvae.suite.run_config import RunConfig

    run = RunConfig(strategy="naive", iterations=6, n_experiences=2)
    folder = tmp_path / "runs" / run.dir_name
    folder.mkdir(parents=True)
    held = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as a driver running it would
        assert driver.main([*TINY, "--strategy", "naive", "--out", str(tmp_path / "runs")]) == 0
    finally:
        os.close(held)
    assert "another driver is running it; skipped" in capsys.readouterr().err
    assert not (folder / "metrics.json").exists() and not (folder / "config.json").exists()


def test_a_run_directory_that_loops_fails_alone_and_a_lock_folder_is_no_obstacle(
        driver, tmp_path, data_root, capsys):
    from cl_binvae.suite.run_config import RunConfig

    out = tmp_path / "runs"
    out.mkdir()
    looping = out / RunConfig(strategy="naive", iterations=6, n_experiences=2).dir_name
    looping.symlink_to(looping.name)  # a symbolic link to itself
    locked = out / RunConfig(strategy="naive", seed=1, iterations=6, n_experiences=2).dir_name
    (locked / ".lock").mkdir(parents=True)  # where drivers once kept their lock file
    assert driver.main([*TINY, "--strategy", "naive", "--seeds", "0", "1",
                        "--out", str(out)]) == 2
    line = one_line_error(capsys, 2)
    assert line.startswith(f"run.py: error: class-IL naive seed 0: {looping} is not a folder")
    assert (locked / "metrics.json").exists() and (locked / ".lock").is_dir()
    assert looping.is_symlink()


USERS_METHODS = '''
import torch
from avalanche.core import SupervisedPlugin

import cl_binvae


def failing(name, make):
    @cl_binvae.register_method(name, resumable=True)
    def build(ctx):
        """a method that fails"""
        return make(ctx)


def raise_(error):
    raise error


class Poison(SupervisedPlugin):
    """Weights turned NaN after the last step (the loss never is), or outputs at test time."""

    def __init__(self, where):
        super().__init__()
        self.where = where

    def after_training_exp(self, strategy, **kwargs):
        if self.where == "weights":
            with torch.no_grad():
                next(strategy.model.parameters()).fill_(float("nan"))

    def after_eval_forward(self, strategy, **kwargs):
        if self.where == "outputs":
            strategy.mb_output = torch.full_like(strategy.mb_output, float("nan"))


failing("raises_runtime", lambda ctx: raise_(RuntimeError("no such layer")))
failing("raises_type", lambda ctx: raise_(TypeError("bad argument")))
failing("raises_key", lambda ctx: raise_(KeyError("lr")))
failing("returns_none", lambda ctx: None)
failing("nan_weights", lambda ctx: ctx.tensor_strategy(plugins=[Poison("weights")]))
failing("nan_outputs", lambda ctx: ctx.tensor_strategy(plugins=[Poison("outputs")]))
'''


@pytest.mark.parametrize("parallel", [
    [], pytest.param(["--workers", "2"], marks=pytest.mark.slow, id="ray")])
def test_whatever_a_method_raises_fails_its_run_alone(cli, tmp_path, parallel):
    if parallel:
        pytest.importorskip("ray")
    (tmp_path / "mine.py").write_text(USERS_METHODS)
    out = tmp_path / "runs"
    done = cli("run", *TINY, "--import", str(tmp_path / "mine.py"), "--strategy",
               "raises_runtime", "raises_type", "raises_key", "returns_none", "nan_weights",
               "nan_outputs", "naive", "--out", str(out), *parallel)
    assert done.returncode == 2, done.stderr
    lines = [x for x in done.stderr.splitlines() if x.startswith("run.py")]
    assert len(lines) == 6 and all("(6 of 7 runs failed; the others ran)" in x for x in lines)
    for method, message in [("raises_runtime", "no such layer"), ("raises_type", "bad argument"),
                            ("raises_key", "'lr'"), ("returns_none", "returned None, not an"),
                            ("nan_weights", "the solver's weights trunk.1.weight are not finite"),
                            ("nan_outputs", "the solver's outputs are not finite")]:
        [line] = [x for x in lines if f" {method} seed 0: " in x]
        [folder] = out.glob(f"*-{method}-*")
        assert message in line and f"(traceback in {folder.resolve() / 'error.txt'})" in line
        assert not (folder / "metrics.json").exists()
    assert len(list(out.glob("*-naive-*/metrics.json"))) == 1


# -- data and flags ----------------------------------------------------------------------------
def write_npz(path: Path, **override: np.ndarray) -> Path:
    arrays = {"x_train": np.zeros((20, 4, 4), np.uint8), "y_train": np.arange(20) % 2,
              "x_test": np.zeros((6, 4, 4), np.uint8), "y_test": np.arange(6) % 2}
    np.savez(path, **(arrays | override))
    return path


@pytest.mark.parametrize("override, message", [
    ({"y_train": np.array([2**63 + 5] + [0] * 19, dtype=np.uint64)}, "has label 9223372036"),
    ({"y_train": np.array([10**12] + [1] * 19)}, "only 20 training images"),
    ({"x_train": np.zeros((20, 0, 0), np.uint8), "x_test": np.zeros((6, 0, 0), np.uint8)},
     "at least one pixel"),
    ({"y_test": np.zeros(6, np.int64)}, "y_test in"),  # class 1 never tested
    ({"y_test": np.arange(6) % 3}, "y_train in"),  # class 2 never learnt
])
def test_bad_labels_and_shapes_are_refused_before_training(driver, tmp_path, capsys, override,
                                                           message):
    data = write_npz(tmp_path / "bad.npz", **override)
    code = driver.main([*TINY, "--stream", str(data), "--out", str(tmp_path / "runs")])
    assert message in one_line_error(capsys, code)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_data_root_that_is_a_file(driver, tmp_path, capsys):
    data_file = tmp_path / "mnist.npz"
    data_file.write_text("not a folder")
    code = driver.main([*TINY, "--data-root", str(data_file), "--out", str(tmp_path / "runs")])
    assert "is a file, not a folder" in one_line_error(capsys, code)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_empty_data_root_names_the_missing_file(driver, tmp_path, capsys):
    root = tmp_path / "data"
    root.mkdir(mode=0o555)
    code = driver.main([*TINY, "--data-root", str(root), "--out", str(tmp_path / "runs")])
    line = one_line_error(capsys, code)
    assert "mnist.npz not found" in line and "read-only" in line
    assert list(root.iterdir()) == []


def test_too_many_permuted_experiences_fail_before_allocating(driver, tmp_path, data_root,
                                                              capsys, monkeypatch):
    monkeypatch.setattr("cl_binvae.suite.streams.physical_memory", lambda: 2**30)
    code = driver.main(["--stream", "permuted_mnist", "--iterations", "2", "--n-experiences",
                        "50", "--strategy", "naive", "--out", str(tmp_path / "runs")])
    assert "more than half of this machine's 1.0 GiB" in one_line_error(capsys, code)
    assert not any((tmp_path / "runs").iterdir())


def test_an_archive_that_expands_beyond_memory_is_refused_before_reading(driver, tmp_path,
                                                                         capsys, monkeypatch):
    data = write_npz(tmp_path / "zeros.npz")
    monkeypatch.setattr("cl_binvae.suite.data.physical_memory", lambda: 100)
    code = driver.main([*TINY, "--stream", str(data), "--out", str(tmp_path / "runs")])
    assert "GiB of arrays once decompressed, more than half" in one_line_error(capsys, code)
    assert not (tmp_path / "runs").exists()


def test_more_experiences_than_classes_are_refused(driver, tmp_path, capsys):
    data = write_npz(tmp_path / "two.npz")
    code = driver.main([*TINY, "--stream", str(data), "--n-experiences", "3",
                        "--out", str(tmp_path / "runs")])
    assert "--n-experiences 3 is more than the 2 classes of two: at most 2" in \
        one_line_error(capsys, code)


def test_a_checkpoint_the_disk_cannot_hold_is_one_line_naming_the_folder(driver, tmp_path,
                                                                         capsys, monkeypatch):
    usage = shutil.disk_usage(tmp_path)._replace(free=1000)
    monkeypatch.setattr("cl_binvae.suite.atomic.shutil.disk_usage", lambda path: usage)
    code = driver.main([*TINY, "--strategy", "naive", "--out", str(tmp_path / "runs")])
    [run] = (tmp_path / "runs").iterdir()
    line = one_line_error(capsys, code)
    assert line.startswith("run.py: error: class-IL naive seed 0: a checkpoint needs ")
    assert line.endswith(f"bytes free in {run}, only 1,000 are; free some space and rerun")
    assert not list(run.glob("progress*")) and not list(run.glob(".*"))


def test_a_write_that_fails_names_its_file(tmp_path):
    with pytest.raises(OSError, match="No space left on device: '.*table.md'"), \
            atomic_path(tmp_path / "table.md"):
        raise OSError(errno.ENOSPC, "No space left on device")  # as PIL raises it, say


def test_out_of_memory_in_a_run_is_one_line_naming_it(cli, tmp_path):
    (tmp_path / "hog.py").write_text(
        "import cl_binvae\n\n\n@cl_binvae.register_method('hog')\ndef hog(ctx):\n"
        "    \"\"\"a method too big for this machine\"\"\"\n"
        "    raise MemoryError('Unable to allocate 80.0 TiB')\n")
    done = cli("run", *TINY, "--import", str(tmp_path / "hog.py"), "--strategy", "hog", "naive",
               "--out", str(tmp_path / "runs"))
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "run.py: error: class-IL hog seed 0: out of memory (MemoryError: Unable to allocate "
        "80.0 TiB); run fewer workers or threads, or a smaller stream")
    assert not list((tmp_path / "runs").glob("*-naive-*"))  # the sweep stopped there


@pytest.fixture
def server():
    """``server(answer)``: a local port that accepts, sends ``answer`` (None: nothing) and
    waits; returns its address."""
    import threading

    sockets = []

    def serve(answer: bytes | None) -> str:
        listener = socket.create_server(("127.0.0.1", 0))
        sockets.append(listener)

        def accept() -> None:
            with contextlib.suppress(OSError):
                conn, _ = listener.accept()
                sockets.append(conn)
                if answer is not None:
                    conn.sendall(answer)

        threading.Thread(target=accept, daemon=True).start()
        return f"127.0.0.1:{listener.getsockname()[1]}"

    yield serve
    for sock in sockets:
        sock.close()


@pytest.mark.parametrize("answer", [None, b"HTTP/1.1 400 Bad Request\r\n\r\n", b"\0" * 9])
def test_a_port_that_is_not_a_ray_head_is_refused_within_the_bound(
        driver, tmp_path, capsys, monkeypatch, server, answer):
    monkeypatch.setattr(driver, "RAY_TIMEOUT_S", 1.0)
    start = time.time()
    code = driver.main([*TINY, "--ray-address", server(answer), "--out", str(tmp_path / "runs")])
    assert "answers, but not as a Ray head (no gRPC handshake within 1 s)" in \
        one_line_error(capsys, code)
    assert time.time() - start < 20
    assert not (tmp_path / "runs").exists()


def test_a_grpc_server_passes_the_handshake(driver, server):
    settings = bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])  # an empty SETTINGS frame, as servers start
    driver.check_ray_address(server(settings))
    driver.check_ray_address(f"ray://{server(settings)}")


@pytest.mark.slow
def test_a_real_ray_head_passes_the_handshake(driver):
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    try:
        driver.check_ray_address(ray.get_runtime_context().gcs_address)
    finally:
        ray.shutdown()


def test_an_unreachable_ray_address_fails_fast(driver, tmp_path, data_root, capsys, monkeypatch):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    start = time.time()
    code = driver.main([*TINY, "--ray-address", f"127.0.0.1:{port}",
                        "--out", str(tmp_path / "runs")])
    assert "does not answer" in one_line_error(capsys, code)
    assert time.time() - start < 30
    assert not (tmp_path / "runs").exists()


KEEPS_SPARSE = '''
import torch
from avalanche.core import SupervisedPlugin

import cl_binvae


class Keeper(SupervisedPlugin):
    def __init__(self):
        super().__init__()
        self.kept = torch.sparse_coo_tensor(torch.tensor([[0]]), torch.tensor([1.0]), (3,))


@cl_binvae.register_method("keeps_sparse")
def keeps_sparse(ctx):
    """fine-tuning with a plugin holding a tensor whose storage cannot be read"""
    return ctx.tensor_strategy(plugins=[Keeper()])
'''


def test_a_run_whose_keepings_cannot_be_counted_still_finishes(cli, tmp_path):
    """Counting what a method keeps is a record, not a result: where it fails (a sparse
    tensor has no data pointer), the run finishes without the counts, said in one line."""
    (tmp_path / "keeper.py").write_text(KEEPS_SPARSE)
    out = tmp_path / "runs"
    done = cli("run", *TINY, "--import", str(tmp_path / "keeper.py"), "--strategy",
               "keeps_sparse", "--out", str(out))
    assert done.returncode == 0, done.stderr
    [folder] = out.glob("*-keeps_sparse-*")
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["stored_samples"] is None and metrics["model_parameters"] is None
    [line] = [x for x in done.stderr.splitlines() if "was not counted" in x]
    assert f"{folder.name}: what keeps_sparse keeps was not counted (RuntimeError" in line
