"""The generative classifier: its likelihood estimate, its scores (computed once per class,
restricted by scenario, the same after a checkpoint) and the method in the driver."""

from __future__ import annotations

import math

import pytest
import torch

from cl_binvae.classifier.config import ClassifierConfig
from cl_binvae.classifier.model import GenerativeClassifier
from cl_binvae.classifier.strategy import GenerativeClassifierStrategy
from cl_binvae.model.config import PriorConfig, VAEConfig
from cl_binvae.model.likelihood import check_samples, log_likelihood
from cl_binvae.model.vae import build_vae
from cl_binvae.suite import checkpoint
from cl_binvae.suite.config import StreamConfig
from cl_binvae.suite.evaluation import evaluate, make_evaluator
from cl_binvae.suite.streams import build_stream

pytestmark = pytest.mark.usefixtures("one_thread")

TINY_VAE = VAEConfig(hidden=(32,), z_dim=3, prior=PriorConfig("mixture"))


def stream(path, scenario: str = "class"):
    return build_stream(StreamConfig(str(path), scenario, n_experiences=2))


def classifier_strategy(stream_, samples: int = 20, prior: str = "mixture", r: float = 0.0):
    torch.manual_seed(0)
    config = ClassifierConfig(iterations=60, batch_size=32, importance_samples=samples)
    vae = VAEConfig(hidden=(32,), z_dim=3, r=r, prior=PriorConfig(prior, components=2))
    model = GenerativeClassifier(stream_.input_shape, stream_.n_outputs, vae, config, seed=0)
    return GenerativeClassifierStrategy(model=model, evaluator=make_evaluator((), None, ""),
                                        eval_mb_size=1000)


# -- the estimate ------------------------------------------------------------------------------
def test_importance_sampled_likelihood_matches_a_brute_force_integral():
    """On a VAE with two latents, log p(x) by importance sampling agrees with the integral
    of p(x|z) p(z) over a fine grid of z."""
    torch.manual_seed(0)
    vae = build_vae((1, 3, 3), VAEConfig(hidden=(8,), z_dim=2, prior=PriorConfig("mixture")))
    vae.eval()
    x = torch.bernoulli(torch.full((4, 1, 3, 3), 0.4))
    grid = torch.linspace(-7, 7, 401)
    z = torch.cartesian_prod(grid, grid)
    cell = math.log((grid[1] - grid[0]).item() ** 2)
    with torch.no_grad():
        outputs = vae.decode(z)
        truth = torch.stack([torch.logsumexp(-vae.reconstruction_nll(xi.expand(len(z), 1, 3, 3),
                                                                     outputs)
                                             + vae.prior.log_prob(z), 0) + cell for xi in x])
    estimates = log_likelihood(vae, x, (1, 10, 4000), rng=torch.Generator().manual_seed(1))
    assert estimates.shape == (3, 4)
    torch.testing.assert_close(estimates[-1], truth, atol=0.02, rtol=0)


def test_nested_sample_counts_are_the_first_draws_of_one_pass():
    vae = build_vae((1, 28, 28), TINY_VAE)
    x = torch.rand(5, 1, 28, 28)
    both = log_likelihood(vae, x, (7, 30), rng=torch.Generator().manual_seed(2))
    alone = log_likelihood(vae, x, 7, rng=torch.Generator().manual_seed(2))
    torch.testing.assert_close(both[0], alone[0])
    with pytest.raises(ValueError, match="must increase"):
        check_samples((10, 5))
    with pytest.raises(ValueError, match=">= 1"):
        check_samples(0)


def test_decoding_in_slices_changes_memory_not_the_estimate(monkeypatch):
    """A chunk's draws decoded a few at a time (to keep transient tensors small) give the
    estimate that decoding them all at once gives: the same draws, the same numbers."""
    from cl_binvae.model import likelihood

    vae = build_vae((1, 28, 28), TINY_VAE)
    x = torch.rand(5, 1, 28, 28)
    monkeypatch.setattr(likelihood, "DECODE_ELEMENTS", 1 << 40)
    whole = log_likelihood(vae, x, (3, 50), rng=torch.Generator().manual_seed(3))
    monkeypatch.setattr(likelihood, "DECODE_ELEMENTS", 2 * x.numel())  # two draws at a time
    sliced = log_likelihood(vae, x, (3, 50), rng=torch.Generator().manual_seed(3))
    torch.testing.assert_close(sliced, whole)


def test_memory_chunks_change_memory_not_the_estimate():
    """Draws taken two at a time (a tight memory bound) give the estimate that drawing them
    all at once gives, up to the order of the log-sum-exp."""
    vae = build_vae((1, 28, 28), TINY_VAE)
    # 8 images x 3 latents: a chunk of two draws is 48 numbers, a multiple of the CPU
    # generator's 16-number block, so splitting the draws there leaves the noise as it is
    # (with 5 images the splits fall inside a block and the noise differs).
    x = torch.rand(8, 1, 28, 28)
    whole = log_likelihood(vae, x, (3, 50), rng=torch.Generator().manual_seed(4))
    chunked = log_likelihood(vae, x, (3, 50), rng=torch.Generator().manual_seed(4),
                             max_decodes=2 * len(x))
    torch.testing.assert_close(chunked, whole)


# -- the classifier ----------------------------------------------------------------------------
def test_each_class_is_scored_once_and_unseen_classes_never_win(four_digits):
    s = stream(four_digits)
    strategy = classifier_strategy(s)
    test = s.benchmark.test_stream
    strategy.train(s.benchmark.train_stream[0])
    first = evaluate(strategy, test)
    model = strategy.model
    assert model.classes == [(0, 0), (0, 1)]
    assert model.scorings == 2 * 2  # two classes, two test experiences of one batch each
    assert first[1] == 0.0  # digits 2 and 3 cannot be predicted before they are learnt
    x = test[1].dataset.eval()[0][0].unsqueeze(0)
    out = model(x, torch.zeros(1, dtype=torch.long))
    assert torch.isinf(out[0, 2:]).all() and torch.isfinite(out[0, :2]).all()
    assert model.scorings == 4 + 2  # a new batch: scored under each class
    evaluate(strategy, test)
    assert model.scorings == 6  # nothing new to score
    strategy.train(s.benchmark.train_stream[1])
    final = evaluate(strategy, test)
    assert model.scorings == 6 + 2 * 2  # the two new classes, on the two test batches
    assert min(final) > 0.5


def test_task_il_argmax_is_restricted_to_the_tasks_classes(four_digits):
    s = stream(four_digits, "task")
    strategy = classifier_strategy(s)
    for experience in s.benchmark.train_stream:
        strategy.train(experience)
    model = strategy.model
    assert model.classes == [(0, 0), (0, 1), (1, 0), (1, 1)]
    x = torch.cat([s.benchmark.test_stream[t].dataset.eval()[0][0].unsqueeze(0)
                   for t in (0, 1)])
    tasks = torch.tensor([0, 1])
    out = model(x, tasks)
    assert out.shape == (2, 2) and torch.isfinite(out).all()
    # The same batch under task 0 alone: the first image's scores are the same, the second
    # image now scored by task 0's VAEs instead of its own task's.
    task0 = model(x, torch.tensor([0, 0]))
    torch.testing.assert_close(task0[0], out[0])
    assert not torch.allclose(task0[1], out[1])
    assert min(evaluate(strategy, s.benchmark.test_stream)) > 0.8
    with pytest.raises(ValueError, match="task labels"):  # both tasks' classes are 0 and 1
        model(x, None)


def test_a_checkpoint_between_experiences_gives_the_same_scores(four_digits, tmp_path):
    s = stream(four_digits)
    straight = classifier_strategy(s, prior="fitted", r=1.0)
    straight.train(s.benchmark.train_stream[0])
    checkpoint.save(tmp_path / "progress.pt", "run", straight, checkpoint.Progress())
    straight.train(s.benchmark.train_stream[1])

    resumed = classifier_strategy(s, prior="fitted", r=1.0)
    checkpoint.load(tmp_path / "progress.pt", "run", resumed, "cpu")
    assert resumed.model.classes == [(0, 0), (0, 1)]
    resumed.train(s.benchmark.train_stream[1])
    x = torch.cat([e.dataset.eval()[0][0].unsqueeze(0) for e in s.benchmark.test_stream])
    straight.model.eval(), resumed.model.eval()
    torch.testing.assert_close(resumed.model(x, None), straight.model(x, None))


def test_a_checkpoint_keeps_the_scores_and_the_frozen_vaes(four_digits, tmp_path):
    """A resumed classifier reads its classes' scores from the checkpoint instead of
    computing them again; a checkpoint written before scores were kept still loads."""
    s = stream(four_digits)
    straight = classifier_strategy(s)
    straight.train(s.benchmark.train_stream[0])
    checkpoint.save(tmp_path / "trained.pt", "run", straight, checkpoint.Progress())
    accuracies = evaluate(straight, s.benchmark.test_stream)
    checkpoint.save(tmp_path / "evaluated.pt", "run", straight, checkpoint.Progress())
    # The resume check compares trained state only: evaluation's scores are not part of it.
    assert checkpoint.difference(checkpoint.read(tmp_path / "trained.pt", "run"),
                                 straight) is None

    resumed = classifier_strategy(s)
    checkpoint.load(tmp_path / "evaluated.pt", "run", resumed, "cpu")
    assert not any(p.requires_grad for p in resumed.model.parameters())
    assert resumed.model.scorings == 2 * 2  # the straight run's: nothing computed here
    assert evaluate(resumed, s.benchmark.test_stream) == accuracies
    assert resumed.model.scorings == 2 * 2

    snapshot = checkpoint.read(tmp_path / "evaluated.pt", "run")
    del snapshot["model"]["_extra_state"]
    older = classifier_strategy(s)
    older.model.load_state_dict(snapshot["model"])
    assert older.model.scorings == 0
    assert evaluate(older, s.benchmark.test_stream) == accuracies
    assert older.model.scorings == 2 * 2


def test_diagnostics_reuse_the_evaluators_scores(four_digits):
    """The diagnostics cut the test set as the evaluator does (here 50 images a batch), so
    they score nothing again."""
    from cl_binvae.methods.gen_classifier import _diagnose

    s = stream(four_digits)
    strategy = classifier_strategy(s)
    strategy.eval_mb_size = 50
    strategy.train(s.benchmark.train_stream[0])
    accuracies = evaluate(strategy, s.benchmark.test_stream)
    before = strategy.model.scorings
    row = _diagnose(strategy, s.benchmark.test_stream, 0)
    assert strategy.model.scorings == before
    assert row["accuracy_S20"] == pytest.approx(accuracies[0])


def test_a_class_too_small_for_its_fitted_prior_fails_before_training(four_digits, tmp_path):
    import numpy as np

    data = dict(np.load(four_digits))
    ones = np.flatnonzero(data["y_train"] == 1)
    keep = np.setdiff1d(np.arange(len(data["y_train"])), ones[1:])  # digit 1: one image
    data["x_train"], data["y_train"] = data["x_train"][keep], data["y_train"][keep]
    np.savez(tmp_path / "small.npz", **data)
    s = stream(tmp_path / "small.npz")
    strategy = classifier_strategy(s, prior="fitted")  # K = 2 components
    with pytest.raises(ValueError, match="class 1 of task 0: fitted prior: 1 latents cannot "
                                         "fit 2 components"):
        strategy.train(s.benchmark.train_stream[0])
    assert strategy.clock.train_exp_iterations == 0


def test_domain_il_codes_and_bad_sample_counts_are_refused():
    from cl_binvae.methods.gen_classifier import ClassifierSettings
    from cl_binvae.suite.run_config import RunConfig

    with pytest.raises(ValueError, match="not domain"):
        RunConfig(strategy="gen_classifier", scenario="domain")
    with pytest.raises(ValueError, match="class-conditional prior makes no sense"):
        ClassifierSettings(r=1, prior="codes")
    for bad in (0, 10**7):
        with pytest.raises(ValueError, match="importance-samples must be in"):
            ClassifierSettings(importance_samples=bad)
    cut = RunConfig(strategy="gen_classifier", preset="cpu",
                    settings=ClassifierSettings(importance_samples=10_000))
    assert cut == RunConfig(strategy="gen_classifier")  # the paper preset's own S: one name


@pytest.mark.slow
@pytest.mark.parametrize("stream_name", ["split_mnist", "split_cifar10"])
def test_the_method_runs_end_to_end_on_each_stream(tmp_path, cli, stream_name):
    out = tmp_path / "runs"
    result = cli("run", "--stream", stream_name, "--strategy", "gen_classifier", "--preset",
                 "cpu", "--iterations", "10", "--importance-samples", "3", "--r", "1",
                 "--prior", "fitted", "--threads", "1", "--no-progress", "--out", str(out))
    assert result.returncode == 0, result.stderr
    [run] = out.iterdir()
    diagnostics = (run / "diagnostics.csv").read_text().splitlines()
    assert diagnostics[0].startswith("experience,accuracy_S1,accuracy_S3,recon,kl")
    assert len(diagnostics) == 6 and (run / "samples_exp4.png").exists()


@pytest.mark.slow
def test_an_interrupted_run_passes_the_resume_check_to_the_same_numbers(tmp_path, cli,
                                                                        interrupt_driver):
    """The checkpoint holds the scores evaluation computed; the resume check (which only
    trains) accepts it, and the resumed run ends where the straight one does."""
    import json

    args = ["--strategy", "gen_classifier", "--preset", "cpu", "--iterations", "10",
            "--importance-samples", "3", "--threads", "1", "--no-progress"]
    interrupted, straight = tmp_path / "interrupted", tmp_path / "straight"
    code, err = interrupt_driver(interrupted, "*/progress.pt", *args)
    assert code == 130, err
    resumed = cli("run", *args, "--out", str(interrupted))
    assert resumed.returncode == 0 and "starting over" not in resumed.stderr, resumed.stderr
    assert cli("run", *args, "--out", str(straight)).returncode == 0
    [run], [other] = interrupted.iterdir(), straight.iterdir()
    for name in ("accuracy_matrix.csv", "diagnostics.csv"):
        assert (run / name).read_text() == (other / name).read_text()
    assert json.loads((run / "metrics.json").read_text())["final_avg_accuracy"] == \
        json.loads((other / "metrics.json").read_text())["final_avg_accuracy"]


@pytest.mark.slow
def test_the_readme_example_is_the_tested_file_and_learns(tmp_path, mnist):
    """The example runs unchanged on Avalanche's own SplitMNIST (read from a home folder
    where Avalanche finds the MNIST files) and ends well above fine-tuning's 20%."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from cl_binvae.suite.data import export_torchvision_mnist

    repo = Path(__file__).resolve().parents[1]
    example = repo / "examples" / "gen_classifier_splitmnist.py"
    assert example.read_text().strip() in (repo / "README.md").read_text()
    export_torchvision_mnist(mnist, tmp_path / ".avalanche" / "data" / "mnist")
    env = {**os.environ, "HOME": str(tmp_path), "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, str(example)], capture_output=True, text=True,
                            env=env, timeout=1200, check=False)
    assert result.returncode == 0, result.stderr
    final = float(result.stdout.strip().splitlines()[-1].rsplit(" ", 1)[1])
    assert final > 0.85, result.stdout
