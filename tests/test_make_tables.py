"""benchmarks/make_tables.py on small synthetic run folders: numbers, order, bad runs, outputs.

The folders are written through the driver's own writer (``cl_binvae.suite.rundir``), then damaged
by hand where a test needs a bad one.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.image import imsave

from cl_binvae.report.tables import Group
from cl_binvae.suite.metrics import summarize_matrix
from cl_binvae.suite.registry import get_method
from cl_binvae.suite.run_config import RunConfig
from cl_binvae.suite.rundir import FOOTPRINT_KEYS, RunDirectory, RunMetrics, RunRecord

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "make_tables.py"
T = 3  # experiences per synthetic run

_spec = importlib.util.spec_from_file_location("make_tables", SCRIPT)
make_tables = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(make_tables)


def write_run(
    root: Path, name: str, strategy: str, seed: int, final: float,
    forgetting: float | None = None, r: float = 0.0,
    distill: bool = False, scenario: str = "class", samples: bool = False,
    iterations: int | None = None, wall_clock_s: float = 1.0,
    footprint: tuple[int, int, int] | None = None, **settings: object,
) -> Path:
    """Write a finished run folder ``<name>-<run id>`` as benchmarks/run.py would: every
    experience but the last at ``final + forgetting``, the last at ``final`` (so forgetting
    is ``forgetting`` and BWT its negative), metrics computed from that matrix."""
    method = get_method(strategy)
    common = {key: settings.pop(key) for key in ("preset", "stream") if key in settings}
    settings.setdefault("prior", "mixture")  # the prior of the runs these tables model
    if method.replays:
        settings["distill"] = distill
    run = RunConfig(strategy=strategy, seed=seed, scenario=scenario, iterations=iterations,
                    settings=type(method.settings)(r=r, **settings)
                    if method.replays or method.takes_r else None, **common)
    directory = RunDirectory(root / f"{name}-{run.run_id}")
    directory.path.mkdir(parents=True)
    protocol = json.loads(json.dumps(run.describe()["protocol"]))
    directory.write_record(RunRecord(run_id=run.run_id, run=run, protocol=protocol,
                                     git_commit="abc", versions={}, device="cpu"))
    joint = run.method_record.joint
    matrix = np.full((1 if joint else T, T), final + (forgetting or 0.0))
    matrix[-1] = final
    diagnostics = [{"experience": i, "recon": 100.0} for i in range(len(matrix))] \
        if method.diagnosed else []
    # The matrix's own numbers; the final accuracy as given, which the mean of its last row
    # matches to rounding, so that the means worked out by hand below are exact.
    summary = summarize_matrix(matrix, np.zeros(T)) | {"final_avg_accuracy": final}
    if joint:
        summary["avg_accuracy_per_step"] = None
    kept = {} if footprint is None else dict(zip(FOOTPRINT_KEYS, footprint, strict=True))
    metrics = RunMetrics(**summary, n_experiences=T, wall_clock_s=wall_clock_s, **kept)
    directory.write_results(matrix, joint, metrics, diagnostics)
    if samples:
        for i in range(T):
            imsave(directory.path / f"samples_exp{i}.png", np.full((8, 8), i / T), cmap="gray")
    return directory.path


def named(root: Path, name: str) -> Path:
    """The run folder ``write_run`` wrote as ``name`` under ``root``."""
    [path] = root.glob(f"{name}-" + "?" * 12)
    return path


@pytest.fixture(scope="module")
def runs_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("runs")
    write_run(root, "naive0", "naive", 0, 0.30, 0.6)
    write_run(root, "naive1", "naive", 1, 0.34, 0.5)
    write_run(root, "er0", "er", 0, 0.70, 0.2)
    write_run(root, "dgr0", "dgr", 0, 0.60, 0.3, samples=True)
    write_run(root, "bin_a0", "binvae_gr", 0, 0.80, 0.10, r=0.5, samples=True)
    write_run(root, "bin_a1", "binvae_gr", 1, 0.82, 0.12, r=0.5)
    write_run(root, "bin_a2", "binvae_gr", 2, 0.87, 0.08, r=0.5)
    write_run(root, "bin_b0", "binvae_gr", 0, 0.75, 0.20, r=0.25, samples=True)
    write_run(root, "bin_d0", "binvae_gr", 0, 0.90, 0.05, r=0.5, distill=True)
    write_run(root, "joint0", "joint", 0, 0.95)
    write_run(root, "joint1", "joint", 1, 0.97)
    write_run(root, "task_er0", "er", 0, 0.99, 0.01, scenario="task")
    # Bad folders, each to be reported and left out of n.
    (write_run(root, "bad_unfinished", "naive", 2, 0.0) / "metrics.json").unlink()
    (write_run(root, "bad_json", "naive", 3, 0.0) / "config.json").write_text('{"run": ')
    nan = write_run(root, "bad_nan", "er", 1, 0.5, 0.2) / "metrics.json"
    nan.write_text(re.sub(r'"bwt": [^,]+', '"bwt": NaN', nan.read_text()))
    shape = write_run(root, "bad_shape", "er", 2, 0.5, 0.2) / "accuracy_matrix.csv"
    shape.write_text("\n".join(shape.read_text().splitlines()[:-1]) + "\n")  # a row short
    # Files that parse but do not agree with each other or with the folder's name.
    edit_json(write_run(root, "bad_edited_metrics", "naive", 4, 0.3, 0.6) / "metrics.json",
              lambda metrics: metrics | {"avg_forgetting": 0.0, "bwt": 0.0})
    matrix = write_run(root, "bad_edited_matrix", "naive", 5, 0.3, 0.6) / "accuracy_matrix.csv"
    matrix.write_text(matrix.read_text().replace("0,0.900000", "0,0.950000", 1))
    copied = write_run(root, "bad_copied", "er", 3, 0.7, 0.2)
    copied.rename(root / f"bad_copied-{named(root, 'naive0').name[-12:]}")
    edit_json(write_run(root, "bad_edited_config", "binvae_gr", 3, 0.8, 0.1, r=0.5) /
              "config.json", lambda config: config | {"run": config["run"] | {"r": 1.0}})
    return root


def edit_json(path: Path, edit) -> None:
    """Rewrite the JSON file at ``path`` as ``edit`` changes it, as a user's editor would."""
    path.write_text(json.dumps(edit(json.loads(path.read_text())), indent=2))


def run_main(*argv: str) -> tuple[int, str]:
    """Run make_tables' main in-process; returns (exit status, stderr)."""
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
        status = make_tables.main(list(argv))
    return status, stderr.getvalue()


@pytest.fixture(scope="module")
def tabulated(runs_root: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("results")
    status, stderr = run_main("--runs", str(runs_root), "--out", str(out), "--figures")
    assert status == 0, stderr
    return out, stderr


def test_means_sds_and_n_per_method(tabulated: tuple[Path, str]) -> None:
    table = pd.read_csv(tabulated[0] / "table_split_mnist_class_paper.csv").set_index("method")
    expected = {  # method: (mean, sd, n) of final_avg_accuracy, worked out by hand
        "naive": (0.32, 0.02 * 2**0.5, 2),  # (0.30, 0.34): deviations +-0.02, ddof=1
        "er": (0.70, None, 1),
        "dgr": (0.60, None, 1),
        "binvae_gr r=0.25": (0.75, None, 1),
        "binvae_gr r=0.5": (0.83, (0.0026 / 2) ** 0.5, 3),  # (0.80, 0.82, 0.87)
        "binvae_gr r=0.5+distill": (0.90, None, 1),
        "joint": (0.96, 0.02 / 2**0.5, 2),  # (0.95, 0.97)
    }
    assert list(table.index) == list(expected)  # table order, binvae_gr by r
    for method, (mean, sd, n) in expected.items():
        row = table.loc[method]
        assert row["final_avg_accuracy_mean"] == pytest.approx(mean, abs=1e-6)
        assert row["final_avg_accuracy_n"] == n
        if sd is None:
            assert np.isnan(row["final_avg_accuracy_sd"])
        else:
            assert row["final_avg_accuracy_sd"] == pytest.approx(sd, abs=1e-6)
    assert table.loc["naive", "avg_forgetting_mean"] == pytest.approx(0.55, abs=1e-6)
    assert table.loc["naive", "bwt_mean"] == pytest.approx(-0.55, abs=1e-6)
    assert table.loc["joint", "avg_forgetting_n"] == 0  # joint reports no forgetting


def test_markdown_latex_and_index(tabulated: tuple[Path, str]) -> None:
    out = tabulated[0]
    markdown = (out / "table_split_mnist_class_paper.md").read_text()
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
            for line in markdown.splitlines() if line.startswith("| ")}
    assert rows["naive"] == ["32.00 ± 2.83 (2)", "55.00 ± 7.07 (2)", "-55.00 ± 7.07 (2)"]
    assert rows["er"] == ["70.00 (1)", "20.00 (1)", "-20.00 (1)"]
    assert rows["joint"] == ["96.00 ± 1.41 (2)", "–", "–"]
    latex = (out / "table_split_mnist_class_paper.tex").read_text()
    assert r"binvae\_gr r=0.5+distill & 90.00 (1)" in latex
    assert r"naive & 32.00 ± 2.83 (2)" in latex
    assert r"\caption{split\_mnist / class / paper preset" in latex
    assert (out / "table_split_mnist_task_paper.csv").exists()
    index = pd.read_csv(out / "runs_index.csv")
    assert sorted(Path(p).name[:-13] for p in index["path"]) == sorted(
        ["naive0", "naive1", "er0", "dgr0", "bin_a0", "bin_a1", "bin_a2", "bin_b0", "bin_d0",
         "joint0", "joint1", "task_er0"])


def test_bad_runs_are_reported_and_left_out(tabulated: tuple[Path, str]) -> None:
    lines = tabulated[1].splitlines()
    for folder, reason in [
            ("bad_unfinished", "unfinished"), ("bad_json", "not valid JSON"),
            ("bad_nan", "not a finite number"), ("bad_shape", "not a 3 x 3 accuracy matrix"),
            ("bad_edited_metrics", ("metrics.json and accuracy_matrix.csv disagree: "
                                    "avg_forgetting is 0.0 in one and 0.6")),
            ("bad_edited_matrix", "metrics.json and accuracy_matrix.csv disagree"),
            ("bad_copied", "config.json: it records run"),
            ("bad_edited_config", "config.json: its run and protocol do not hash to its run_id")]:
        assert [line for line in lines if f"/{folder}-" in line and reason in line], folder
    index = pd.read_csv(tabulated[0] / "runs_index.csv")
    assert not index["path"].str.contains("bad").any()


def test_a_run_whose_name_is_not_utf8_is_skipped_alone(runs_root: Path, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    shutil.copytree(runs_root, runs)
    naive = named(runs, "naive0")
    odd = naive.with_name(os.fsdecode(b"naive\xff-") + naive.name[-12:])
    naive.rename(odd)
    status, stderr = run_main("--runs", str(runs), "--out", str(tmp_path / "out"))
    assert status == 0, stderr
    [line] = [x for x in stderr.splitlines() if "UTF-8" in x]
    assert line == f"make_tables.py: skipping {odd}: the run's directory name is not UTF-8; " \
                   "rename it and rerun"
    assert len(pd.read_csv(tmp_path / "out" / "runs_index.csv")) == 11


def test_figures_are_written(tabulated: tuple[Path, str]) -> None:
    figures = tabulated[0] / "figures"
    for name in ("accuracy_matrix", "avg_accuracy", "r_sweep", "forgetting", "samples"):
        assert (figures / f"split_mnist_class_paper_{name}.png").stat().st_size > 0
    # The task group has a single er run: no r sweep and no samples, each said on stderr.
    assert not (figures / "split_mnist_task_paper_r_sweep.png").exists()
    assert "split_mnist_task_paper_samples.png: skipped" in tabulated[1]


def test_running_twice_gives_identical_files(tabulated: tuple[Path, str], runs_root: Path) -> None:
    out = tabulated[0]
    first = {p: p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    assert run_main("--runs", str(runs_root), "--out", str(out))[0] == 0
    second = {p: p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    assert first == second


def test_no_figures_and_duplicate_runs(runs_root: Path, tmp_path: Path) -> None:
    # The same root twice: every run is a duplicate of itself, reported and counted once.
    status, stderr = run_main("--runs", str(runs_root), str(runs_root), "--out", str(tmp_path),
                              "--no-figures")
    assert status == 0
    assert stderr.count("same method and seed as") == 12
    assert len(pd.read_csv(tmp_path / "runs_index.csv")) == 12
    assert not (tmp_path / "figures").exists()


def test_root_without_finished_runs_exits_2(runs_root: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    (write_run(empty, "unfinished", "naive", 0, 0.5) / "metrics.json").unlink()
    status, stderr = run_main("--runs", str(runs_root), str(empty), "--out", str(tmp_path / "b"))
    assert status == 2
    assert "holds no finished run" in stderr.splitlines()[-1]


def test_missing_root_exits_2_with_one_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--runs", str(tmp_path / "nope"), "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1
    assert "does not exist" in result.stderr


def test_cut_protocol_gets_its_own_table_and_says_so(tmp_path: Path) -> None:
    # The same method and seed, once on the preset and once cut: not a duplicate, and the cut
    # run is never averaged into the preset's table.
    runs = tmp_path / "runs"
    write_run(runs, "full", "naive", 0, 0.30)
    write_run(runs, "cut", "naive", 0, 0.20, iterations=50)
    status, stderr = run_main("--runs", str(runs), "--out", str(tmp_path / "out"),
                              "--no-figures")
    assert status == 0, stderr
    full = (tmp_path / "out" / "table_split_mnist_class_paper.md").read_text()
    cut = (tmp_path / "out" / "table_split_mnist_class_paper_it50.md").read_text()
    assert full.startswith("## split_mnist / class / paper preset\n")
    assert re.search(r"\| naive +\| +30\.00 \(1\) \|", full)
    assert cut.startswith("## split_mnist / class / paper preset, CUT to 50 iterations per "
                          "experience\n")
    assert re.search(r"\| naive +\| +20\.00 \(1\) \|", cut)
    assert Group("permuted_mnist", "class", "paper", 250, 20).title == (
        "permuted_mnist / class / paper preset, CUT to 250 iterations per experience, "
        "EXTENDED to 20 experiences")


def test_notebook_runs_on_tabulated_results(runs_root: Path, tmp_path: Path) -> None:
    # The notebook reads ../results from its own folder: give a copy of it synthetic results.
    assert run_main("--runs", str(runs_root), "--out", str(tmp_path / "results"))[0] == 0
    (tmp_path / "notebooks").mkdir()
    notebook = tmp_path / "notebooks" / "results.ipynb"
    notebook.write_bytes((REPO / "notebooks" / "results.ipynb").read_bytes())
    execute = [sys.executable, str(REPO / "notebooks" / "execute.py")]
    result = subprocess.run([*execute, str(notebook)], capture_output=True, text=True,
                            timeout=600, check=False)
    assert result.returncode == 0, result.stderr
    outputs = json.dumps(json.loads(notebook.read_text())["cells"])
    assert "split_mnist / class / paper preset" in outputs
    assert "binvae_gr r=0.5+distill" in outputs
    assert '"output_type": "error"' not in outputs

    missing = subprocess.run([*execute, str(tmp_path / "nope.ipynb")], capture_output=True,
                             text=True, timeout=60, check=False)
    assert missing.returncode == 2
    assert missing.stderr.strip() == f"execute: error: notebook {tmp_path / 'nope.ipynb'} " \
                                     "does not exist"


def test_paired_differences_against_the_twin_and_plain_dgr(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    for seed, (bin_acc, fitted_acc, dgr_acc, dgr_fitted_acc) in enumerate(
            [(0.90, 0.95, 0.85, 0.86), (0.80, 0.93, 0.80, 0.82), (0.85, 0.94, 0.80, 0.80)]):
        write_run(runs, f"bin{seed}", "binvae_gr", seed, bin_acc, r=1.0)
        write_run(runs, f"fitted{seed}", "binvae_gr", seed, fitted_acc, r=1.0, prior="fitted")
        write_run(runs, f"dgr{seed}", "dgr", seed, dgr_acc)
        write_run(runs, f"dgr_fitted{seed}", "dgr", seed, dgr_fitted_acc, prior="fitted")
    status, stderr = run_main("--runs", str(runs), "--out", str(tmp_path / "out"),
                              "--no-figures")
    assert status == 0, stderr
    paired = pd.read_csv(tmp_path / "out" / "paired_split_mnist_class_paper.csv")
    rows = {(r["method"], r["baseline"]): r for r in paired.to_dict("records")}
    assert set(rows) == {("binvae_gr r=1", "dgr"), ("binvae_gr r=1 prior=fitted20", "dgr"),
                         ("binvae_gr r=1 prior=fitted20", "dgr prior=fitted20")}
    # Differences 0.05, 0.00, 0.05: mean 1/30, sd 0.05/sqrt(3), t(0.975, 2) = 4.3027.
    plain = rows["binvae_gr r=1", "dgr"]
    half = 4.302653 * (0.05 / 3**0.5) / 3**0.5
    assert plain["diff_mean"] == pytest.approx(1 / 30, abs=1e-6)
    assert (plain["ci95_low"], plain["ci95_high"]) == pytest.approx((1 / 30 - half,
                                                                     1 / 30 + half), abs=1e-5)
    assert rows["binvae_gr r=1 prior=fitted20", "dgr prior=fitted20"]["diff_mean"] == \
        pytest.approx(0.34 / 3, abs=1e-6)  # 0.09 + 0.11 + 0.14
    markdown = (tmp_path / "out" / "table_split_mnist_class_paper.md").read_text()
    assert "### Paired differences" in markdown and "+3.33 [" in markdown


def test_paired_differences_of_an_r0_row_under_another_prior_against_n01(
        tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    for seed, (plain, fitted, binarized) in enumerate([(0.50, 0.52, 0.53), (0.50, 0.51, 0.50)]):
        write_run(runs, f"plain{seed}", "gen_classifier", seed, plain)
        write_run(runs, f"fitted{seed}", "gen_classifier", seed, fitted, prior="fitted")
        write_run(runs, f"bin{seed}", "gen_classifier", seed, binarized, r=1.0, prior="fitted")
    status, stderr = run_main("--runs", str(runs), "--out", str(tmp_path / "out"),
                              "--no-figures")
    assert status == 0, stderr
    paired = pd.read_csv(tmp_path / "out" / "paired_split_mnist_class_paper.csv")
    rows = {(r["method"], r["baseline"]): r["diff_mean"] for r in paired.to_dict("records")}
    # The plain r = 0 row is a baseline only: never paired with itself.
    assert rows == pytest.approx({
        ("gen_classifier r=0 prior=fitted20", "gen_classifier r=0"): 0.015,
        ("gen_classifier r=1 prior=fitted20", "gen_classifier r=0 prior=fitted20"): 0.0,
        ("gen_classifier r=1 prior=fitted20", "gen_classifier r=0"): 0.015,
    })


def test_a_group_without_pairs_or_generators_now_loses_their_old_files(tmp_path: Path) -> None:
    runs, out = tmp_path / "runs", tmp_path / "out"
    for seed in (0, 1):
        write_run(runs, f"naive{seed}", "naive", seed, 0.3)
        write_run(runs, f"bin{seed}", "binvae_gr", seed, 0.8, r=1.0)
        write_run(runs, f"dgr{seed}", "dgr", seed, 0.7)
    old = [out / f"{kind}_split_mnist_class_paper.{suffix}"
           for kind, suffix in (("paired", "csv"), ("generators", "csv"), ("generators", "md"))]
    assert run_main("--runs", str(runs), "--out", str(out), "--no-figures")[0] == 0
    assert all(path.exists() for path in old)
    for name in ("bin0", "bin1", "dgr0", "dgr1"):
        shutil.rmtree(named(runs, name))
    status, stderr = run_main("--runs", str(runs), "--out", str(out), "--no-figures")
    assert status == 0 and not any(path.exists() for path in old)
    assert stderr.count("removed ") == 3
    assert "Paired" not in (out / "table_split_mnist_class_paper.md").read_text()


def test_r_sweep_draws_one_line_per_prior_with_the_right_twin(tmp_path: Path) -> None:
    from cl_binvae.report.figures import _r_series
    from cl_binvae.report.tables import load_runs

    runs = tmp_path / "runs"
    write_run(runs, "dgr", "dgr", 0, 0.80)
    write_run(runs, "dgr_fitted", "dgr", 0, 0.90, prior="fitted")
    for r, acc in ((0.5, 0.70), (1.0, 0.60)):
        write_run(runs, f"mix{r}", "binvae_gr", 0, acc, r=r)
        write_run(runs, f"std{r}", "binvae_gr", 0, acc + 0.01, r=r, prior="standard")
        write_run(runs, f"fit{r}", "binvae_gr", 0, acc + 0.25, r=r, prior="fitted")
    series = {label: (finals, [run.method for run in baseline])
              for label, finals, baseline in _r_series(load_runs([runs], print))}
    assert series == {
        "binvae_gr": ({0.5: [0.70], 1.0: [0.60], 0.0: [0.80]}, ["dgr"]),
        # At r = 0 the standard prior is the plain VAE's: its twin is plain dgr.
        "binvae_gr prior=standard": ({0.5: [0.71], 1.0: [0.61], 0.0: [0.80]}, ["dgr"]),
        "binvae_gr prior=fitted20": ({0.5: [0.95], 1.0: [0.85], 0.0: [0.90]},
                                     ["dgr prior=fitted20"]),
    }


def test_cpu_runs_get_their_own_table_apart_from_paper_and_cut(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    for name, preset, iterations, acc in (("paper", "paper", None, 0.30),
                                          ("cpu", "cpu", None, 0.40),
                                          ("cpu_cut", "cpu", 50, 0.50),
                                          ("cpu_longer", "cpu", 2000, 0.60)):
        write_run(runs, name, "naive", 0, acc, iterations=iterations, preset=preset,
                  stream="permuted_mnist")
    status, stderr = run_main("--runs", str(runs), "--out", str(tmp_path / "out"),
                              "--no-figures")
    assert status == 0, stderr
    titles = {path.name: path.read_text().splitlines()[0]
              for path in (tmp_path / "out").glob("table_*.md")}
    assert titles == {
        "table_permuted_mnist_class_paper.md": "## permuted_mnist / class / paper preset",
        "table_permuted_mnist_class_cpu.md": "## permuted_mnist / class / cpu preset",
        "table_permuted_mnist_class_cpu_it50.md":
            "## permuted_mnist / class / cpu preset, CUT to 50 iterations per experience",
        "table_permuted_mnist_class_cpu_it2000.md":
            "## permuted_mnist / class / cpu preset, EXTENDED to 2000 iterations per experience",
    }


def test_readme_table_blocks_are_filled_from_the_generated_tables(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    write_run(runs, "naive", "naive", 0, 0.30)
    readme = tmp_path / "README.md"
    readme.write_text("Intro.\n\n<!-- table: out/table_split_mnist_class_paper.md -->\nstale\n"
                      "<!-- /table -->\n\nOutro.\n")
    status, stderr = run_main("--runs", str(runs), "--out", str(tmp_path / "out"),
                              "--no-figures", "--readme", str(readme))
    assert status == 0, stderr
    text = readme.read_text()
    table = (tmp_path / "out" / "table_split_mnist_class_paper.md").read_text()
    assert "stale" not in text and text.startswith("Intro.") and text.endswith("Outro.\n")
    assert table.split("\n", 1)[1].lstrip("\n") in text  # the table, without its heading
    assert run_main("--runs", str(runs), "--out", str(tmp_path / "out"), "--no-figures",
                    "--readme", str(readme))[0] == 0
    assert readme.read_text() == text  # idempotent
    readme.write_text("<!-- table: out/nope.md -->\n<!-- /table -->\n")
    status, stderr = run_main("--runs", str(runs), "--out", str(tmp_path / "out"),
                              "--no-figures", "--readme", str(readme))
    assert status == 2 and "nope.md" in stderr
    unclosed = ("<!-- table: out/table_split_mnist_class_paper.md -->\nkept\n\nprose\n"
                "<!-- table: out/table_split_mnist_class_paper.md -->\n<!-- /table -->\n")
    readme.write_text(unclosed)
    status, stderr = run_main("--runs", str(runs), "--out", str(tmp_path / "out"),
                              "--no-figures", "--readme", str(readme))
    assert status == 2 and "needs its own <!-- /table -->" in stderr
    assert readme.read_text() == unclosed


def test_compute_table_gives_each_methods_wall_clock_and_what_it_keeps(tmp_path: Path) -> None:
    """Minutes per run over seeds; the footprint its runs recorded, – for runs made before
    it was, "all" stored samples for joint; the runs index keeps the counts as integers."""
    root, out = tmp_path / "runs", tmp_path / "out"
    write_run(root, "er0", "er", 0, 0.7, 0.2, wall_clock_s=60.0, footprint=(100, 400, 1000))
    write_run(root, "er1", "er", 1, 0.7, 0.2, wall_clock_s=180.0, footprint=(100, 400, 1000))
    write_run(root, "naive0", "naive", 0, 0.3, 0.5, wall_clock_s=30.0)
    write_run(root, "joint0", "joint", 0, 0.9, footprint=(100, 0, 0))
    assert run_main("--runs", str(root), "--out", str(out))[0] == 0
    markdown = (out / "compute_split_mnist_class_paper.md").read_text()
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
            for line in markdown.splitlines() if line.startswith("| ")}
    assert rows["er"] == ["2.0 ± 1.4 (2)", "100", "400", "1,000"]
    assert rows["naive"] == ["0.5 (1)", "–", "–", "–"]
    assert rows["joint"][1:] == ["100", "0", "all"]
    index = pd.read_csv(out / "runs_index.csv").set_index("method")
    assert index.loc["joint", "model_parameters"] == 100
    assert index["stored_samples"].isna().sum() == 1  # naive's


def test_generator_summary_averages_the_last_diagnostics(tabulated: tuple[Path, str]) -> None:
    summary = pd.read_csv(tabulated[0] / "generators_split_mnist_class_paper.csv")
    assert list(summary["method"]) == ["dgr", "binvae_gr r=0.25", "binvae_gr r=0.5",
                                       "binvae_gr r=0.5+distill"]
    assert summary.set_index("method").loc["binvae_gr r=0.5", "n"] == 3
    assert (summary["recon"] == 100.0).all() and summary["iw_ll"].isna().all()
    markdown = (tabulated[0] / "generators_split_mnist_class_paper.md").read_text()
    assert "| dgr " in markdown and "nan" not in markdown


def test_paired_differences_of_a_method_against_the_one_it_extends(tmp_path: Path) -> None:
    """ewc_replay is binvae_gr plus EWC: paired with binvae_gr under the replay settings
    they share (r = 1, fitted prior), not with binvae_gr at another prior or with dgr."""
    runs = tmp_path / "runs"
    for seed, (ewc_acc, bin_acc) in enumerate([(0.91, 0.94), (0.92, 0.93), (0.90, 0.94)]):
        write_run(runs, f"ewc{seed}", "ewc_replay", seed, ewc_acc, r=1.0, prior="fitted")
        write_run(runs, f"bin{seed}", "binvae_gr", seed, bin_acc, r=1.0, prior="fitted")
        write_run(runs, f"mix{seed}", "binvae_gr", seed, 0.5, r=1.0)
    status, stderr = run_main("--runs", str(runs), "--out", str(tmp_path / "out"),
                              "--no-figures")
    assert status == 0, stderr
    paired = pd.read_csv(tmp_path / "out" / "paired_split_mnist_class_paper.csv")
    rows = {(r["method"], r["baseline"]): r for r in paired.to_dict("records")}
    assert set(rows) == {("ewc_replay r=1 prior=fitted20", "binvae_gr r=1 prior=fitted20")}
    assert rows["ewc_replay r=1 prior=fitted20", "binvae_gr r=1 prior=fitted20"][
        "diff_mean"] == pytest.approx(-0.08 / 3, abs=1e-6)  # -0.03 - 0.01 - 0.04


def test_overview_sets_published_values_beside_ours(tmp_path: Path) -> None:
    """Methods down, tables across, from whole protocols and at least two seeds; the
    published value in brackets, starred where it lies outside our mean ± sd."""
    root, out = tmp_path / "runs", tmp_path / "out"
    for seed, final in enumerate((0.90, 0.92)):
        write_run(root, f"dgr{seed}", "dgr", seed, final, 0.05)
        write_run(root, f"er{seed}", "er", seed, final - 0.2, 0.2)
        write_run(root, f"task{seed}", "naive", seed, 0.9, 0.05, scenario="task")
    write_run(root, "naive0", "naive", 0, 0.2, 0.7)  # one seed: exploration, left out
    write_run(root, "cut_dgr0", "dgr", 0, 0.5, 0.2, iterations=5)
    write_run(root, "cut_dgr1", "dgr", 1, 0.5, 0.2, iterations=5)  # a cut protocol: left out
    published = tmp_path / "published.csv"
    published.write_bytes("\ufeffstream,scenario,method,final_avg_accuracy,source\n"
                          "split_mnist,class,dgr,90.8,Somebody 2021\n"
                          "split_mnist,class,er,50.0,Somebody else 2020\n"
                          "split_mnist,class,dgrr,91.0,A typo\n".encode())  # a BOM, as Excel
    status, stderr = run_main("--runs", str(root), "--out", str(out), "--no-figures",
                              "--published", str(published))
    assert status == 0
    assert "published split_mnist class dgrr: no table of the overview has that row" in stderr
    markdown = (out / "overview.md").read_text()
    header = next(line for line in markdown.splitlines() if line.startswith("| Method"))
    assert [c.strip() for c in header.split("|")[2:-1]] == [
        "split_mnist / class / paper preset", "split_mnist / task / paper preset"]
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
            for line in markdown.splitlines() if line.startswith("| ")}
    assert rows["dgr"] == ["91.00 ± 1.41 (2) [90.8]", ""]  # within one sd
    assert rows["er"] == ["71.00 ± 1.41 (2) [50.0*]", ""]
    assert rows["naive"] == ["", "90.00 ± 0.00 (2)"]
    assert "- dgr on split_mnist / class: 90.8, Somebody 2021" in markdown
    assert len(pd.read_csv(out / "overview.csv")) == 3


def test_overview_of_single_seeds_says_so_in_a_sentence(tmp_path: Path) -> None:
    """A pilot's runs (one seed each) give no overview row: a sentence, not an empty table."""
    root, out = tmp_path / "runs", tmp_path / "out"
    write_run(root, "dgr0", "dgr", 0, 0.9, 0.05)
    status, _ = run_main("--runs", str(root), "--out", str(out), "--no-figures")
    assert status == 0
    markdown = (out / "overview.md").read_text()
    assert "No method has 2 seeds or more" in markdown and "| Method" not in markdown
    assert pd.read_csv(out / "overview.csv").empty


@pytest.mark.parametrize("text, message", [
    ("stream,scenario,method,accuracy,source\n", "the header must be"),
    ("stream,scenario,method,final_avg_accuracy,source\nsplit_mnist,class,dgr,,x\n",
     "published.csv:2: a row needs all of"),
    ("stream,scenario,method,final_avg_accuracy,source\nsplit_mnist,class,dgr,908,x\n",
     "published.csv:2: accuracy '908' is not a percentage"),
    (b"stream,scenario,method,final_avg_accuracy,source\n\xff\n", "not a UTF-8 CSV file"),
    (("stream,scenario,method,final_avg_accuracy,source\nsplit_mnist,class,dgr,90,x\n"
     "split_mnist,class,dgr,91,y\n"), "published.csv:3: split_mnist class dgr is given twice"),
])
def test_a_bad_published_file_exits_2_before_anything_is_written(
        runs_root: Path, tmp_path: Path, text: str | bytes, message: str) -> None:
    published, out = tmp_path / "published.csv", tmp_path / "out"
    if isinstance(text, bytes):
        published.write_bytes(text)
    else:
        published.write_text(text)
    status, stderr = run_main("--runs", str(runs_root), "--out", str(out), "--published",
                              str(published))
    assert status == 2
    [line] = stderr.strip().splitlines()
    assert message in line
    assert not [path for path in out.rglob("*") if path.is_file()]
