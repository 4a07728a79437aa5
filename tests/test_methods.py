"""The method registry: users' methods through the driver, resume and tables; loggers; bad
input to --import; and the committed runs keeping their ids."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

import cl_binvae
from cl_binvae.suite.cli import import_methods, resolve_import
from cl_binvae.suite.registry import METHODS, get_method
from cl_binvae.suite.run_config import RunConfig

REPO = Path(__file__).resolve().parents[1]
TINY = ["--stream", "split_mnist", "--iterations", "8", "--threads", "1", "--no-progress"]
TOY = '''
import cl_binvae


@cl_binvae.register_method("toy", settings=cl_binvae.ReplaySettings(), pinned=("r",),
                           resumable=True, rank=35)
def toy(ctx):
    """a toy: our generative replay under another name"""
    return ctx.generative_replay()
'''


@pytest.fixture
def registry():
    """Run the test against a copy of the registry, so its registrations do not leak."""
    saved = dict(METHODS)
    modules = set(sys.modules)
    yield METHODS
    METHODS.clear()
    METHODS.update(saved)
    for name in set(sys.modules) - modules:
        if name.startswith("cl_binvae_user_"):
            del sys.modules[name]


def test_the_extended_twin_keeps_protocol_seed_and_shared_settings(registry):
    """ewc_replay's twin is binvae_gr with its replay settings; a method extending one
    without settings gets that method plainly; a method extending none says so."""
    settings = get_method("ewc_replay").settings
    combined = RunConfig(strategy="ewc_replay", seed=3, scenario="task",
                         settings=type(settings)(r=0.5, prior="mixture", ewc_lambda=5.0))
    twin = combined.extended_twin()
    assert (twin.strategy, twin.seed, twin.scenario) == ("binvae_gr", 3, "task")
    assert twin.settings == cl_binvae.ReplaySettings(r=0.5, prior="mixture")
    cl_binvae.register_method("naive_plus", extends="naive")(lambda ctx: None)
    assert RunConfig(strategy="naive_plus", seed=2).extended_twin() == \
        RunConfig(strategy="naive", seed=2)
    with pytest.raises(ValueError, match="naive extends no method"):
        RunConfig(strategy="naive", seed=0).extended_twin()


def test_extending_a_method_not_registered_is_refused(registry):
    with pytest.raises(ValueError, match="'naive_plus' extends 'naiv', which is not a registered"):
        cl_binvae.register_method("naive_plus", extends="naiv")(lambda ctx: None)
    with pytest.raises(ValueError, match="extends 'itself'"):
        cl_binvae.register_method("itself", extends="itself")(lambda ctx: None)
    assert "naive_plus" not in METHODS and "itself" not in METHODS


def test_registering_a_name_twice_or_a_bad_name_is_refused(registry):
    with pytest.raises(ValueError, match="'naive' is registered already"):
        cl_binvae.register_method("naive")(lambda ctx: None)
    with pytest.raises(ValueError, match="lower-case letters"):
        cl_binvae.register_method("My-Method")
    with pytest.raises(ValueError, match="scenarios must be some of"):
        cl_binvae.register_method("x", scenarios=("online",))
    with pytest.raises(ValueError, match=r"pinned \['radius'\] are not fields"):
        cl_binvae.register_method("x", settings=cl_binvae.ReplaySettings(), pinned=("radius",))
    with pytest.raises(TypeError, match="frozen dataclass instance"):
        cl_binvae.register_method("x", settings=cl_binvae.ReplaySettings)
    with pytest.raises(ValueError, match="registered: naive, ewc, si, lwf, er, agem, icarl, der, "
                                         "avalanche_gr, dgr, binvae_gr, ewc_replay, joint"):
        get_method("gdumb")


def test_import_registers_once_and_refuses_files_that_register_nothing(registry, tmp_path):
    toy = tmp_path / "toy.py"
    toy.write_text(TOY)
    assert import_methods([str(toy)]) == ["toy"]
    assert import_methods([str(toy)]) == []  # the same file again: skipped, not re-registered
    assert get_method("toy").replays and get_method("toy").resumable
    assert not get_method("toy").takes_r
    fitted = cl_binvae.ReplaySettings(prior="fitted")
    assert RunConfig(strategy="toy", settings=fitted).method == "toy prior=fitted20"
    twin = tmp_path / "twin.py"
    twin.write_text(TOY)
    with pytest.raises(ValueError, match="'toy' is registered already"):
        import_methods([str(twin)])


def test_an_import_resolves_alike_in_the_driver_and_in_ray_workers(tmp_path, monkeypatch):
    """Ray workers get the resolved spec: a home-relative file must name the same file."""
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "mine.py").write_text(TOY)
    assert resolve_import("~/mine.py") == str(tmp_path / "mine.py")
    assert resolve_import("package.module") == "package.module"


@pytest.mark.parametrize("content, spec, message", [
    (None, "missing.py", "no such file"),
    (None, "no_such_package.methods", "no such module"),
    ("raise RuntimeError('boom')", "boom.py", "raised RuntimeError: boom"),
    ("x = 1", "nothing.py", "registered no method"),
    ("import sys\nsys.exit(0)", "exits.py", "called sys.exit(0); a methods file registers"),
    ("print('hello')\n" + TOY, "chatty.py", "printed to stdout ('hello')"),
    ("import not_a_module_anywhere", "broken.py", "No module named 'not_a_module_anywhere'"),
    ("x = 1", "methods.txt", "give a .py file or a module name"),
])
def test_bad_imports_exit_2_with_one_line_and_write_nothing(
        registry, driver, tmp_path, data_root, monkeypatch, capsys, content, spec, message):
    monkeypatch.setenv("CL_BINVAE_DATA", str(data_root))
    if content is not None:
        (tmp_path / spec).write_text(content)
        spec = str(tmp_path / spec)
    out = tmp_path / "runs"
    assert driver.main([*TINY, "--import", spec, "--out", str(out)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], lines
    assert not out.exists()


def test_a_method_that_lacks_the_scenario_exits_2(registry, driver, tmp_path, data_root,
                                                  monkeypatch, capsys):
    monkeypatch.setenv("CL_BINVAE_DATA", str(data_root))
    (tmp_path / "classy.py").write_text(
        "import cl_binvae\n\n@cl_binvae.register_method('classy', scenarios=('class',))\n"
        "def classy(ctx):\n    return ctx.tensor_strategy()\n")
    args = [*TINY, "--import", str(tmp_path / "classy.py"), "--strategy", "classy",
            "--scenario", "task", "--out", str(tmp_path / "runs")]
    assert driver.main(args) == 2
    assert "classy supports the scenarios class, not task" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_loggers_unknown_or_uninstalled_exit_2(driver, tmp_path, data_root, monkeypatch, capsys):
    monkeypatch.setenv("CL_BINVAE_DATA", str(data_root))
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # as if it were not installed
    assert driver.main([*TINY, "--logger", "tensorboard", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install 'cl_binvae[tensorboard]'" in err[0]
    assert not (tmp_path / "r").exists()


def test_csv_logger_writes_avalanches_csv_files(tmp_path, cli):
    out = tmp_path / "runs"
    result = cli("run", *TINY, "--n-experiences", "2", "--strategy", "naive", "--logger",
                 "csv", "text", "--out", str(out))
    assert result.returncode == 0, result.stderr
    [run] = out.iterdir()
    csv = run / "logs" / "csv"
    assert {"training_results.csv", "eval_results.csv"} <= {p.name for p in csv.iterdir()}
    assert "Top1_Acc_Exp" in (run / "logs" / "log.txt").read_text()
    assert len((csv / "eval_results.csv").read_text().splitlines()) > 2


def test_a_users_method_runs_resumes_and_is_tabulated(tmp_path, cli, interrupt_driver):
    """A toy method from a file: interrupted mid-stream, resumed to the same numbers as an
    uninterrupted run, then tabulated with its own row and figures."""
    toy = tmp_path / "toy.py"
    toy.write_text(TOY)
    args = [*TINY, "--iterations", "20", "--import", str(toy),
            "--strategy", "toy", "naive"]
    interrupted, straight = tmp_path / "interrupted", tmp_path / "straight"
    code, err = interrupt_driver(interrupted, "*toy*/progress.pt", *args)
    assert code == 130, err
    [toy_dir] = interrupted.glob("*toy*")
    assert not (toy_dir / "metrics.json").exists()

    resumed = cli("run", *args, "--out", str(interrupted))
    assert resumed.returncode == 0, resumed.stderr
    assert cli("run", *args, "--out", str(straight)).returncode == 0
    other = straight / toy_dir.name
    for name in ("accuracy_matrix.csv", "diagnostics.csv"):
        assert (toy_dir / name).read_text() == (other / name).read_text()

    results = tmp_path / "results"
    table = cli("make_tables", "--import", str(toy), "--runs", str(interrupted), "--out",
                str(results))
    assert table.returncode == 0, table.stderr
    rows = (results / "table_split_mnist_class_paper_it20.md").read_text()
    assert rows.index("| naive") < rows.index("| toy")  # rank 35 sorts after naive
    assert (results / "figures" / "split_mnist_class_paper_it20_accuracy_matrix.png").exists()
    # Without the import, the toy runs cannot be read: reported, not fatal.
    bare = cli("make_tables", "--runs", str(interrupted), "--out", str(tmp_path / "bare"),
               "--no-figures")
    assert bare.returncode == 0 and "methods not registered here: toy (1 runs); give the file " \
        "that registers them with --import" in bare.stderr


def test_the_readme_example_is_the_tested_file_and_runs(tmp_path, cli):
    example = (REPO / "examples" / "si_replay.py").read_text()
    assert example.strip() in (REPO / "README.md").read_text()
    out = tmp_path / "runs"
    result = cli("run", *TINY, "--n-experiences", "2", "--import", "examples/si_replay.py",
                 "--strategy", "si_replay", "--out", str(out), cwd=REPO)
    assert result.returncode == 0, result.stderr
    [run] = out.iterdir()
    config = json.loads((run / "config.json").read_text())
    assert config["run"]["strategy"] == "si_replay"
    assert (run / "diagnostics.csv").exists() and (run / "samples_exp1.png").exists()


def test_committed_runs_keep_their_ids_and_directories():
    """Every run in results/runs still hashes to its recorded id and directory name: settings
    added to RunConfig must not move the published runs."""
    runs = sorted(p for p in (REPO / "results" / "runs").iterdir()
                  if (p / "metrics.json").exists())  # finished ones: runs may be under way
    assert runs
    for folder in runs:
        record = json.loads((folder / "config.json").read_text())
        run = RunConfig.from_dict(record["run"])
        assert (run.run_id, run.dir_name) == (record["run_id"], folder.name)


FLAKY = '''
import cl_binvae


@cl_binvae.register_method("flaky")
def flaky(ctx):
    """fine-tuning that diverges at seed 0"""
    if ctx.run.seed == 0:
        raise FloatingPointError("solver loss is nan in experience 0")
    return ctx.tensor_strategy()
'''


@pytest.mark.parametrize("parallel", [
    [], pytest.param(["--workers", "2"], marks=pytest.mark.slow, id="ray")])
def test_a_failing_run_is_reported_at_the_end_and_the_sweep_goes_on(tmp_path, cli, parallel):
    if parallel:
        pytest.importorskip("ray")
    (tmp_path / "flaky.py").write_text(FLAKY)
    out = tmp_path / "runs"
    result = cli("run", *TINY, "--n-experiences", "2", "--import", str(tmp_path / "flaky.py"),
                 "--strategy", "flaky", "--seeds", "0", "1", "--out", str(out), *parallel)
    assert result.returncode == 2
    # Ray logs its start on stderr too; the driver's own lines start with its name.
    [line] = [x for x in result.stderr.splitlines() if x.startswith("run.py")]
    [failed] = out.glob("*-s0-*")
    assert line == ("run.py: error: class-IL flaky seed 0: solver loss is nan in experience 0 "
                    f"(traceback in {failed.resolve() / 'error.txt'}) (1 of 2 runs failed; the "
                    "others ran)")
    if not parallel:
        assert result.stderr.strip() == line
    trace = (failed / "error.txt").read_text()
    assert trace.startswith("Traceback") and "FloatingPointError: solver loss is nan" in trace
    finished = [d.name for d in out.iterdir() if (d / "metrics.json").exists()]
    assert len(finished) == 1 and "-s1-" in finished[0]
    assert "flaky" in result.stdout.split("mean ± sd")[-1]  # seed 1 in the summary


def test_a_method_that_cannot_be_built_leaves_no_log_file_open(registry, tmp_path, data_root):
    from cl_binvae.suite.experiment import RunFailed, execute_run

    @cl_binvae.register_method("broken")
    def broken(ctx):
        """raises while building"""
        raise ValueError("cannot build")

    # ``error`` keeps the failed frames alive, and with them any file they left open.
    with pytest.raises(RunFailed, match="cannot build") as error:
        execute_run(RunConfig(strategy="broken", iterations=2, n_experiences=2), tmp_path,
                    str(data_root), progress=False, loggers=["text"])
    assert isinstance(error.value.__cause__, ValueError)  # the builder's own error, chained
    [log] = tmp_path.glob("*/logs/log.txt")
    open_files = {Path(os.readlink(fd)) for fd in Path("/proc/self/fd").iterdir()
                  if fd.is_symlink() and Path(os.readlink(fd)).is_absolute()}
    assert log.resolve() not in open_files


def test_running_a_run_again_removes_the_last_attempts_error(driver, tmp_path, data_root,
                                                            monkeypatch):
    monkeypatch.setenv("CL_BINVAE_DATA", str(data_root))
    args = [*TINY, "--n-experiences", "2", "--strategy", "naive", "--out", str(tmp_path)]
    assert driver.main(args) == 0
    [run] = tmp_path.iterdir()
    (run / "metrics.json").unlink()  # as after a failed attempt: unfinished, with its error
    (run / "error.txt").write_text("Traceback (most recent call last): ...")
    assert driver.main(args) == 0
    assert (run / "metrics.json").exists() and not (run / "error.txt").exists()


def test_a_users_flags_are_in_help_and_bad_values_are_one_line(cli, tmp_path):
    """examples/si_replay.py declares --si-lambda: the driver lists it, with the method that
    takes it, and refuses a bad value in one line before anything runs."""
    helped = cli("run", "--import", "examples/si_replay.py", "--help", cwd=REPO)
    assert helped.returncode == 0 and "--si-lambda" in helped.stdout
    assert "(si, si_replay; default: 1)" in " ".join(helped.stdout.split())
    out = tmp_path / "runs"
    bad = cli("run", *TINY, "--import", "examples/si_replay.py", "--strategy", "si_replay",
              "--si-lambda", "-1", "--out", str(out), cwd=REPO)
    assert bad.returncode == 2 and not out.exists()
    assert bad.stderr.strip() == ("run.py: error: si_replay (r = 0, prior fitted): "
                                  "--si-lambda must be > 0, got -1.0")
    untaken = cli("run", *TINY, "--si-lambda", "2", "--out", str(out), cwd=REPO)
    assert untaken.returncode == 2 and "--si-lambda" in untaken.stderr
