"""The regularization and rehearsal baselines from Avalanche (ewc, si, lwf, agem, icarl, der)
and ewc_replay: each trains in every scenario it claims and refuses the others, passes its
settings to Avalanche, stores exactly ER's budget, refuses bad values of its flags, records
its settings in its runs, and says truthfully that it restarts rather than resumes."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict
from pathlib import Path

import pytest

from cl_binvae.methods.ewc import EWCSettings
from cl_binvae.suite.registry import get_method
from cl_binvae.suite.run_config import RunConfig

pytestmark = pytest.mark.usefixtures("one_thread")

REPO = Path(__file__).resolve().parents[1]
NEW = ("ewc", "si", "lwf", "agem", "icarl", "der", "ewc_replay")
REHEARSAL = ("agem", "icarl", "der")


def tiny(stream: Path | str, out: Path, *args: str) -> list[str]:
    return ["--stream", str(stream), "--n-experiences", "2", "--iterations", "5",
            "--threads", "1", "--no-progress", "--out", str(out), *args]


def run_on(four_digits: Path, strategy: str, scenario: str = "class", settings=None) -> RunConfig:
    return RunConfig(stream=str(four_digits), scenario=scenario, strategy=strategy,
                     iterations=5, n_experiences=2, settings=settings)


def trained(run: RunConfig):
    """The run's strategy, trained on both experiences of its stream."""
    from cl_binvae.suite.experiment import build_strategy
    from cl_binvae.suite.streams import build_stream

    stream = build_stream(run.stream_config())
    strategy = build_strategy(run, stream, "cpu")
    for experience in stream.benchmark.train_stream:
        strategy.train(experience)
    return strategy


def plugin(strategy, kind):
    [found] = [p for p in strategy.plugins if isinstance(p, kind)]
    return found


# -- training, scenarios -----------------------------------------------------------------------
@pytest.mark.parametrize("method", NEW)
def test_each_method_trains_in_every_scenario_it_claims(method, driver, four_digits, tmp_path):
    """Through the driver, both experiences of a 4-digit slice (the penalties, distillation and
    replay act from the second on), in each scenario the method claims; the run records its
    settings and leaves no checkpoint behind."""
    record = get_method(method)
    out = tmp_path / "runs"
    assert driver.main(tiny(four_digits, out, "--strategy", method,
                            "--scenario", *record.scenarios)) == 0
    runs = sorted(out.iterdir())
    assert [run.name.split("-")[1] for run in runs] == sorted(record.scenarios)
    for run in runs:
        metrics = json.loads((run / "metrics.json").read_text())
        assert 0 <= metrics["final_avg_accuracy"] <= 1
        assert len((run / "accuracy_matrix.csv").read_text().strip().splitlines()) == 3
        config = json.loads((run / "config.json").read_text())["run"]
        assert config["strategy"] == method
        for field, value in (asdict(record.settings) if record.settings else {}).items():
            assert config[field] == value
        assert not (run / "progress.pt").exists()
        # What it keeps, counted by the run: ER's budget for rehearsal, a copy of the model
        # for LwF, the importances and anchor weights for EWC.
        assert metrics["stored_samples"] == (400 if method in REHEARSAL else 0)
        copies = {"ewc": 2, "lwf": 1}.get(method)
        if copies is not None:
            assert metrics["extra_parameters"] == copies * metrics["model_parameters"]


@pytest.mark.parametrize("method, scenario", [("icarl", "task"), ("icarl", "domain"),
                                              ("der", "task")])
def test_unsupported_scenarios_exit_2_with_one_line(method, scenario, driver, tmp_path,
                                                    data_root, monkeypatch, capsys):
    monkeypatch.setenv("CL_BINVAE_DATA", str(data_root))
    out = tmp_path / "runs"
    assert driver.main(tiny("split_mnist", out, "--strategy", method,
                            "--scenario", scenario)) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    supported = ", ".join(get_method(method).scenarios)
    assert line.endswith(f"{method} supports the scenarios {supported}, not {scenario}")
    assert not out.exists()


# -- what reaches Avalanche --------------------------------------------------------------------
def test_the_settings_reach_avalanches_plugins(four_digits):
    from avalanche.training.plugins import (
        AGEMPlugin,
        EWCPlugin,
        LwFPlugin,
        SynapticIntelligencePlugin,
    )

    from cl_binvae.methods.lwf import LwFSettings
    from cl_binvae.replay.plugin import BinVAEReplayPlugin
    from cl_binvae.suite.experiment import build_strategy
    from cl_binvae.suite.streams import build_stream

    def build(strategy, scenario="class", settings=None):
        run = run_on(four_digits, strategy, scenario, settings)
        return build_strategy(run, build_stream(run.stream_config()), "cpu")

    ewc = plugin(build("ewc", settings=EWCSettings(ewc_lambda=3.0, ewc_decay=0.5)), EWCPlugin)
    assert (ewc.ewc_lambda, ewc.mode, ewc.decay_factor) == (3.0, "online", 0.5)
    si = plugin(build("si"), SynapticIntelligencePlugin)
    assert (si.si_lambda, si.eps) == ([1.0], 0.1)
    # van de Ven's weighting: each earlier experience weighs lwf_alpha; one head holds them all
    # in one KL (alpha grows with the experiences seen), task-IL sums one KL per head.
    settings = LwFSettings(lwf_alpha=3.0, lwf_temperature=1.5)
    for scenario, alpha in (("class", [0.0, 3.0]), ("domain", [0.0, 3.0]), ("task", 3.0)):
        lwf = plugin(build("lwf", scenario, settings), LwFPlugin).lwf
        assert (lwf.alpha, lwf.temperature) == (alpha, 1.5)
    agem = plugin(build("agem"), AGEMPlugin)
    assert (agem.patterns_per_experience, agem.sample_size) == (200, 128)
    der = build("der")
    assert (der.alpha, der.beta, der.batch_size_mem) == (1.0, 0.5, 128)
    replay = build("ewc_replay")
    assert plugin(replay, EWCPlugin).ewc_lambda == EWCSettings().ewc_lambda
    assert plugin(replay, BinVAEReplayPlugin).generator.config.r == 1.0


def test_si_keeps_copies_of_its_snapshots_so_its_penalty_acts_on_a_cpu(four_digits):
    """Avalanche 0.6's SI plugin snapshots the weights as views of the parameters on a CPU:
    its path integrals, importances and penalty are all 0 there. Ours copies the snapshots:
    importances after the first experience, a penalty during the second."""
    import torch
    from avalanche.core import SupervisedPlugin
    from avalanche.training.plugins import SynapticIntelligencePlugin

    from cl_binvae.methods.si import snapshot_plugin
    from cl_binvae.suite.context import MethodContext
    from cl_binvae.suite.evaluation import make_evaluator
    from cl_binvae.suite.streams import build_stream

    run = run_on(four_digits, "si")
    stream = build_stream(run.stream_config())

    class Penalty(SupervisedPlugin):
        """Records SI's penalty at every step (after SI's own hooks)."""

        def __init__(self, si):
            super().__init__()
            self.si, self.values = si, []

        def before_backward(self, strategy, **kwargs):
            loss = SynapticIntelligencePlugin.compute_ewc_loss(
                strategy.model, self.si.ewc_data, self.si.excluded_parameters, "cpu", 1.0)
            self.values.append(float(loss))

    def train(plugin_class):
        torch.manual_seed(0)
        si = plugin_class(si_lambda=1.0, eps=0.1)
        penalty = Penalty(si)
        ctx = MethodContext(run=run, stream=stream, device="cpu", plugins=[],
                            evaluator=make_evaluator((), None, ""))
        strategy = ctx.tensor_strategy(plugins=[si, penalty])
        strategy.train(stream.benchmark.train_stream[0])
        importance = sum(float(w.data.abs().sum()) for w in si.ewc_data[1].values())
        penalty.values.clear()
        strategy.train(stream.benchmark.train_stream[1])
        return importance, max(penalty.values)

    importance, penalty = train(snapshot_plugin())
    assert importance > 0 and penalty > 0
    # Avalanche's own: nothing. Should this fail, Avalanche copies its snapshots now and
    # snapshot_plugin can go.
    assert train(SynapticIntelligencePlugin) == (0, 0)


@pytest.mark.parametrize("scenario", ["class", "task", "domain"])
def test_rehearsal_methods_store_exactly_ers_budget(four_digits, scenario):
    """After both experiences of the 4-digit slice, agem, icarl and der hold as many samples
    as er (100 per class of the stream: 400), class-balanced where er is; A-GEM as many of
    each experience."""
    from avalanche.training.plugins import AGEMPlugin, ReplayPlugin
    from avalanche.training.supervised.icarl import _ICaRLPlugin

    er = plugin(trained(run_on(four_digits, "er", scenario)), ReplayPlugin)
    er_labels = Counter(int(y) for y in er.storage_policy.buffer.targets)
    assert sum(er_labels.values()) == 400
    if scenario == "class":
        assert er_labels == {c: 100 for c in range(4)}

    stored = {}
    for method in REHEARSAL:
        if scenario not in get_method(method).scenarios:
            continue
        strategy = trained(run_on(four_digits, method, scenario))
        if method == "agem":
            buffers = plugin(strategy, AGEMPlugin).buffers
            assert [len(b) for b in buffers] == [200, 200]
            labels = [int(y) for b in buffers for y in b.targets]
        elif method == "icarl":
            labels = [y for ys in plugin(strategy, _ICaRLPlugin).y_memory for y in ys]
        else:
            labels = [int(y) for y in strategy.storage_policy.buffer.targets]
        stored[method] = Counter(labels)
    assert {method: sum(c.values()) for method, c in stored.items()} == dict.fromkeys(stored, 400)
    for method in ("icarl", "der"):
        if method in stored and scenario == "class":
            assert stored[method] == er_labels


# -- bad input ---------------------------------------------------------------------------------
@pytest.mark.parametrize("method, flags, message", [
    ("ewc", ["--ewc-lambda", "-1"], "--ewc-lambda must be finite and >= 0, got -1"),
    ("ewc", ["--ewc-lambda", "inf"], "--ewc-lambda must be finite and >= 0, got inf"),
    ("ewc", ["--ewc-decay", "1.5"], "--ewc-decay must be in [0, 1], got 1.5"),
    ("ewc_replay", ["--ewc-lambda", "-5"], "--ewc-lambda must be finite and >= 0, got -5"),
    ("si", ["--si-lambda", "-1"], "--si-lambda must be finite and >= 0, got -1"),
    ("si", ["--si-eps", "0"], "--si-eps must be finite and > 0, got 0"),
    ("lwf", ["--lwf-alpha", "-0.5"], "--lwf-alpha must be finite and >= 0, got -0.5"),
    ("lwf", ["--lwf-temperature", "0"], "--lwf-temperature must be finite and > 0, got 0"),
    ("agem", ["--agem-sample-size", "0"], "--agem-sample-size must be >= 1, got 0"),
    ("der", ["--der-alpha", "-1"], "--der-alpha must be finite and >= 0, got -1"),
    ("der", ["--der-beta", "nan"], "--der-beta must be finite and >= 0, got nan"),
    ("si", ["--ewc-lambda", "10"], "--ewc-lambda applies to ewc, ewc_replay; none of"),
    ("icarl", ["--der-alpha", "1"], "--der-alpha applies to der; none of --strategy icarl"),
])
def test_bad_hyperparameters_exit_2_with_one_line_and_write_nothing(
        method, flags, message, driver, tmp_path, data_root, monkeypatch, capsys):
    monkeypatch.setenv("CL_BINVAE_DATA", str(data_root))
    out = tmp_path / "runs"
    assert driver.main(tiny("split_mnist", out, "--strategy", method, *flags)) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("run.py: error: ") and message in line, line
    assert not out.exists()


def test_the_driver_lists_every_new_flag(driver):
    text = " ".join(driver._parser(with_methods=True).format_help().split())
    for option in ("--ewc-lambda", "--ewc-decay", "--si-lambda", "--si-eps", "--lwf-alpha",
                   "--lwf-temperature", "--agem-sample-size", "--der-alpha", "--der-beta"):
        assert option in text
    for method in NEW:
        assert f"{method} (" in text


# -- records and resume ------------------------------------------------------------------------
def test_settings_are_recorded_hashed_and_named():
    default = RunConfig(strategy="ewc")
    strong = RunConfig(strategy="ewc", settings=EWCSettings(ewc_lambda=1e9))
    assert default.to_dict()["ewc_lambda"] == EWCSettings().ewc_lambda
    assert default.run_id != strong.run_id
    assert (default.method, strong.method) == ("ewc", "ewc ewc_lambda=1e9")
    assert strong.dir_name.startswith("split_mnist-class-ewc-ewc_lambda=1e9-s0-")
    # A value is named in the shorter of its plain and exponent forms.
    names = [RunConfig(strategy="ewc", settings=EWCSettings(ewc_lambda=value)).method
             for value in (4e5, 100, 2.5, 5e-5)]
    assert names == ["ewc ewc_lambda=4e5", "ewc ewc_lambda=100", "ewc ewc_lambda=2.5",
                     "ewc ewc_lambda=5e-5"]
    from cl_binvae.suite.settings import shown  # a user's settings may hold any float
    assert (shown(float("inf")), shown(float("nan"))) == ("inf", "nan")
    assert RunConfig.from_dict(strong.to_dict()) == strong
    # An int given for a float is the same run as its float.
    assert RunConfig(strategy="ewc", settings=EWCSettings(ewc_lambda=100)).run_id == \
        RunConfig(strategy="ewc", settings=EWCSettings(ewc_lambda=100.0)).run_id
    # Defaults sort first among a method's rows.
    assert default.table_key < strong.table_key
    # A-GEM's reference sample at the batch size is its default: one run, one id.
    from cl_binvae.methods.agem import AGEMSettings

    at_batch = RunConfig(strategy="agem", settings=AGEMSettings(agem_sample_size=128))
    assert at_batch == RunConfig(strategy="agem")
    assert RunConfig(strategy="agem", settings=AGEMSettings(agem_sample_size=64)).method == \
        "agem agem_sample_size=64"


@pytest.mark.parametrize("method", NEW)
def test_each_restarts_rather_than_resumes_and_the_readme_says_so(method):
    """Their state lives in Avalanche's plugins and strategies, which have no state_dict: an
    interrupted run starts over, and the README's table of methods says so."""
    assert get_method(method).resumable is False
    readme = (REPO / "README.md").read_text()
    [row] = [line for line in readme.splitlines() if line.startswith(f"| `{method}` |")]
    assert "restarts" in row
