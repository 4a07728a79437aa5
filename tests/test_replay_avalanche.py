"""The plugin inside unmodified Avalanche pipelines: classic SplitMNIST, Naive and EWC."""

from __future__ import annotations

import warnings

import pytest
import torch
from avalanche.benchmarks.classic import SplitMNIST
from avalanche.evaluation.metrics import accuracy_metrics, forgetting_metrics
from avalanche.training import EWC, Naive
from avalanche.training.plugins import EvaluationPlugin

from cl_binvae.model.vae import VAEConfig, build_vae
from cl_binvae.replay.plugin import BinVAEReplayPlugin, ReplayConfig
from cl_binvae.suite.data import export_torchvision_mnist
from cl_binvae.suite.solvers import SolverConfig, build_solver

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def splitmnist(tmp_path_factory, mnist):
    """Avalanche's own SplitMNIST, read by torchvision from a raw layout made from the npz."""
    root = export_torchvision_mnist(mnist, tmp_path_factory.mktemp("torchvision"))
    return SplitMNIST(n_experiences=5, fixed_class_order=list(range(10)), dataset_root=root)


def final_accuracy(splitmnist, strategy_cls, with_replay: bool, **kwargs) -> float:
    torch.manual_seed(0)
    model = build_solver((1, 28, 28), 10, config=SolverConfig(hidden=(200, 200)))
    plugins = []
    if with_replay:  # SplitMNIST normalizes inputs: tell the plugin how to undo it
        config = ReplayConfig(generator_iterations=300, input_mean=(0.1307,), input_std=(0.3081,))
        plugins.append(BinVAEReplayPlugin(build_vae((1, 28, 28), VAEConfig(r=0.3)), config))
    evaluator = EvaluationPlugin(accuracy_metrics(stream=True),
                                 forgetting_metrics(experience=True, stream=True), loggers=[])
    strategy = strategy_cls(model=model, optimizer=torch.optim.Adam(model.parameters(), 1e-3),
                            criterion=torch.nn.CrossEntropyLoss(), train_mb_size=128,
                            train_epochs=1, eval_mb_size=1000, plugins=plugins, evaluator=evaluator, **kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for exp in splitmnist.train_stream:
            strategy.train(exp)
        results = strategy.eval(splitmnist.test_stream)
    return results["Top1_Acc_Stream/eval_phase/test_stream/Task000"]


@pytest.mark.parametrize("strategy_cls, kwargs", [(Naive, {}), (EWC, {"ewc_lambda": 100.0})])
def test_replay_beats_plain_strategy_in_class_il(splitmnist, strategy_cls, kwargs):
    plain = final_accuracy(splitmnist, strategy_cls, with_replay=False, **kwargs)
    replay = final_accuracy(splitmnist, strategy_cls, with_replay=True, **kwargs)
    assert plain < 0.3  # class-IL fine-tuning forgets everything but the last two digits
    print(f"{strategy_cls.__name__}: plain {plain:.3f}, with replay {replay:.3f}")
    assert replay > plain + 0.25, (plain, replay)


def test_the_readme_example_is_the_tested_file_and_learns(tmp_path, mnist):
    """examples/replay_splitmnist.py, as the README shows it, runs unchanged on Avalanche's
    own SplitMNIST (from a home folder where Avalanche finds the MNIST files) and keeps the
    old digits: far above fine-tuning's 20%."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    example = repo / "examples" / "replay_splitmnist.py"
    assert example.read_text().strip() in (repo / "README.md").read_text()
    export_torchvision_mnist(mnist, tmp_path / ".avalanche" / "data" / "mnist")
    env = {**os.environ, "HOME": str(tmp_path), "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, str(example)], capture_output=True, text=True,
                            env=env, timeout=1800, check=False)
    assert result.returncode == 0, result.stderr
    final = float(result.stdout.strip().splitlines()[-1].rsplit(" ", 1)[1])
    assert final > 0.6, result.stdout
