"""The generative-replay plugin: mechanics on tiny models, and in unmodified Avalanche pipelines."""

from __future__ import annotations

import copy
import dataclasses
import io

import pytest
import torch
import torch.nn.functional as F
from avalanche.benchmarks.scenarios.dataset_scenario import benchmark_from_datasets
from avalanche.benchmarks.utils import AvalancheDataset
from avalanche.core import SupervisedPlugin
from avalanche.training import LwF
from torch.utils.data import TensorDataset

from cl_binvae.model.priors import PriorConfig
from cl_binvae.model.vae import VAEConfig, build_vae
from cl_binvae.replay.plugin import BinVAEReplayPlugin, ReplayConfig
from cl_binvae.replay.strategy import BinVAEGenerativeReplay
from cl_binvae.suite.solvers import SolverConfig, build_solver
from cl_binvae.suite.streams import StreamConfig, build_stream

TINY_VAE = VAEConfig(r=0.5, z_dim=8, hidden=(64,))
TINY_SOLVER = SolverConfig(hidden=(64,))


@pytest.fixture(scope="module")
def streams(data_root):
    return {s: build_stream(StreamConfig("split_mnist", s), data_root) for s in ("class", "task")}


class Recorder(SupervisedPlugin):
    """Keeps what the strategy holds at chosen hooks (runs after the replay plugin)."""

    def __init__(self, at: str = "before_backward") -> None:
        super().__init__()
        self.calls: list[dict] = []
        setattr(self, at, self._record)

    def _record(self, strategy, **kwargs) -> None:
        self.calls.append({
            "exp": strategy.experience.current_experience,
            "mbatch": [t.detach().clone() for t in strategy.mbatch],
            "output": None if strategy.mb_output is None else strategy.mb_output.detach().clone(),
            "loss": None if strategy.loss is None else strategy.loss.item(),
        })


def make_strategy(stream, plugin_cls=BinVAEReplayPlugin, plugins=(), iterations=15,
                  prior="mixture", **replay):
    torch.manual_seed(0)
    n_tasks = stream.n_experiences if stream.config.scenario == "task" else 1
    model = build_solver(stream.input_shape, stream.n_outputs, n_tasks, TINY_SOLVER)
    generator = build_vae(stream.input_shape,
                          dataclasses.replace(TINY_VAE, prior=PriorConfig(prior, components=3)))
    strategy = BinVAEGenerativeReplay(
        model=model, optimizer=torch.optim.Adam(model.parameters(), 1e-3), generator=generator,
        replay=ReplayConfig(generator_iterations=iterations, **replay),
        train_mb_size=32, train_iterations=iterations, eval_mb_size=512,
        plugins=list(plugins), evaluator=None)
    if plugin_cls is not BinVAEReplayPlugin:  # swap in a subclass, keep the same position
        strategy.replay_plugin = plugin_cls(generator, strategy.replay_plugin.config)
        strategy.plugins[0] = strategy.replay_plugin
    return strategy


def test_loss_is_weighted_one_over_t(streams):
    recorder = Recorder()
    strategy = make_strategy(streams["class"], plugins=[recorder])
    for exp in streams["class"].benchmark.train_stream[:3]:
        strategy.train(exp)
    call = next(c for c in recorder.calls if c["exp"] == 2)
    x, y, _ = call["mbatch"]
    out, n = call["output"], 32
    assert len(x) == 64  # 32 current + 32 replayed
    expected = F.cross_entropy(out[:n], y[:n]) / 3 + F.cross_entropy(out[n:], y[n:]) * 2 / 3
    assert call["loss"] == pytest.approx(float(expected), rel=1e-5)
    first = next(c for c in recorder.calls if c["exp"] == 0)
    assert len(first["mbatch"][0]) == 32  # nothing to replay during the first experience


def test_fixed_replay_weight_and_distillation(streams):
    recorder = Recorder()
    strategy = make_strategy(streams["class"], plugins=[recorder], replay_weight=0.25,
                             temperature=2.0)
    strategy.train(streams["class"].benchmark.train_stream[0])
    teacher_model = strategy.replay_plugin.frozen_solver
    strategy.train(streams["class"].benchmark.train_stream[1])
    assert strategy.replay_plugin.replay_weight(2) == 0.25
    call = next(c for c in recorder.calls if c["exp"] == 1)
    x, y, _ = call["mbatch"]
    out, n = call["output"], 32
    with torch.no_grad():
        teacher = teacher_model(x[n:])[:, :2] / 2.0
    targets = F.pad(F.softmax(teacher, 1), (0, 8))  # classes 2..9 were unseen: zero target
    kd = -(targets * F.log_softmax(out[n:] / 2.0, 1)).sum(1).mean() * 4.0
    expected = 0.75 * F.cross_entropy(out[:n], y[:n]) + 0.25 * kd
    assert call["loss"] == pytest.approx(float(expected), rel=1e-4)


def test_pseudo_labels_name_only_classes_seen_before(streams):
    recorder = Recorder("before_forward")
    strategy = make_strategy(streams["class"], plugins=[recorder])
    for exp in streams["class"].benchmark.train_stream[:3]:
        strategy.train(exp)
    for call in recorder.calls:
        y_replay = call["mbatch"][1][32:]
        if call["exp"] == 0:
            assert len(y_replay) == 0
        else:
            assert set(y_replay.tolist()) <= set(range(2 * call["exp"]))


def test_task_il_replay_spreads_over_previous_tasks_and_keeps_dtype(streams):
    recorder = Recorder("before_forward")
    strategy = make_strategy(streams["task"], plugins=[recorder])
    for exp in streams["task"].benchmark.train_stream[:3]:
        strategy.train(exp)
    calls = [c for c in recorder.calls if c["exp"] == 2]
    t_replay = torch.cat([c["mbatch"][2][32:] for c in calls])
    y_replay = torch.cat([c["mbatch"][1][32:] for c in calls])
    assert calls[0]["mbatch"][2].dtype == torch.int64
    assert set(t_replay.tolist()) == {0, 1}  # both previous tasks, never the current one
    assert set(y_replay.tolist()) <= {0, 1}


def test_frozen_copies_get_no_gradients_and_do_not_move(streams):
    class Check(SupervisedPlugin):
        """After every optimizer step of experience 1: frozen copies untouched, solver moving."""

        checked = 0

        def before_training_exp(self, strategy, **kwargs):
            plugin = strategy.replay_plugin
            self.start = {name: copy.deepcopy(m.state_dict()) for name, m in (
                ("solver", strategy.model), ("frozen", plugin.frozen_solver),
                ("frozen_gen", plugin.frozen_generator)) if m is not None}

        def after_update(self, strategy, **kwargs):
            plugin = strategy.replay_plugin
            if plugin.frozen_solver is None:
                return
            for name, module in (("frozen", plugin.frozen_solver),
                                 ("frozen_gen", plugin.frozen_generator)):
                assert all(p.grad is None and not p.requires_grad for p in module.parameters())
                for key, value in module.state_dict().items():
                    assert torch.equal(value, self.start[name][key]), (name, key)
            assert any(not torch.equal(v, self.start["solver"][k])
                       for k, v in strategy.model.state_dict().items())
            self.checked += 1

    check = Check()
    strategy = make_strategy(streams["class"], plugins=[check])
    for exp in streams["class"].benchmark.train_stream[:2]:
        strategy.train(exp)
    assert check.checked == 15


def test_subclass_still_trains_its_generator(streams):
    class MyReplay(BinVAEReplayPlugin):
        pass

    strategy = make_strategy(streams["class"], plugin_cls=MyReplay)
    before = copy.deepcopy(strategy.replay_plugin.generator.state_dict())
    strategy.train(streams["class"].benchmark.train_stream[0])
    after = strategy.replay_plugin.generator.state_dict()
    assert any(not torch.equal(after[k], before[k]) for k in before if "train_steps" not in k)


def _checkpoint(strategy) -> bytes:
    buffer = io.BytesIO()
    torch.save({"model": strategy.model.state_dict(),
                "optimizer": strategy.optimizer.state_dict(),
                "replay": strategy.replay_plugin.state_dict()}, buffer)
    return buffer.getvalue()


@pytest.mark.parametrize("prior", ["mixture", "fitted", "codes"])
def test_state_dict_round_trip_continues_the_stream_identically(streams, prior):
    """Checkpoint after experience 1, restore into fresh objects, train experience 2 in both:
    every parameter of solver and generator, and the prior's state, end the same (optimizer
    states included)."""
    stream = streams["class"].benchmark.train_stream
    original = make_strategy(streams["class"], prior=prior)
    for exp in stream[:2]:
        original.train(exp)
    blob = _checkpoint(original)

    restored = make_strategy(streams["class"], prior=prior)
    state = torch.load(io.BytesIO(blob), weights_only=False)
    restored.model.load_state_dict(state["model"])
    # Avalanche resets optimizer state when a strategy first trains: reset first, then load.
    restored.make_optimizer(reset_optimizer_state=True)
    restored.optimizer.load_state_dict(state["optimizer"])
    restored.replay_plugin.load_state_dict(state["replay"], restored.model)

    for strategy in (original, restored):
        torch.manual_seed(123)
        strategy.train(stream[2])
    for a, b in ((original.model, restored.model),
                 (original.replay_plugin.generator, restored.replay_plugin.generator)):
        for (name, p), q in zip(a.state_dict().items(), b.state_dict().values()):
            assert torch.equal(p, q), name
    assert original.replay_plugin.experiences_seen == restored.replay_plugin.experiences_seen == 3
    assert original.replay_plugin.seen.keys == restored.replay_plugin.seen.keys


def test_codes_prior_replays_the_drawn_classes(streams):
    """Labelled by the prior, replay's labels are the classes the codes prior drew: seen
    classes only, about uniformly; the prior has a code for every class seen."""
    recorder = Recorder("before_forward")
    strategy = make_strategy(streams["class"], plugins=[recorder], prior="codes",
                             replay_labels="prior")
    for exp in streams["class"].benchmark.train_stream[:3]:
        strategy.train(exp)
    plugin = strategy.replay_plugin
    assert plugin.generator.prior.classes.tolist() == [0, 1, 2, 3, 4, 5]
    assert plugin.frozen_generator.prior.classes.tolist() == [0, 1, 2, 3, 4, 5]
    labels = torch.cat([c["mbatch"][1][32:] for c in recorder.calls if c["exp"] == 2])
    counts = torch.bincount(labels, minlength=10)
    assert counts[4:].sum() == 0 and (counts[:4] > 0.15 * len(labels)).all()


def test_fitted_prior_is_refitted_after_every_experience(streams):
    strategy = make_strategy(streams["class"], prior="fitted")
    means = []
    for exp in streams["class"].benchmark.train_stream[:2]:
        strategy.train(exp)
        prior = strategy.replay_plugin.generator.prior
        means.append(prior.means.clone())
        assert int(prior.fits) == len(means)
        # The frozen copy replays what was just fitted.
        assert torch.equal(strategy.replay_plugin.frozen_generator.prior.means, prior.means)
    assert means[0].shape == (3, 8) and not torch.equal(means[0], means[1])


def test_active_classes_score_only_the_classes_seen_so_far(streams):
    recorder = Recorder()
    strategy = make_strategy(streams["class"], plugins=[recorder], active_classes=True)
    for exp in streams["class"].benchmark.train_stream[:2]:
        strategy.train(exp)
    for exp, n_active in ((0, 2), (1, 4)):
        call = next(c for c in recorder.calls if c["exp"] == exp)
        y = call["mbatch"][1]
        out = call["output"][:, :n_active]
        n = 32
        expected = F.cross_entropy(out[:n], y[:n])
        if exp == 1:
            expected = expected / 2 + F.cross_entropy(out[n:], y[n:]) / 2
        assert call["loss"] == pytest.approx(float(expected), rel=1e-5)


def test_active_classes_with_distillation_stay_finite(streams):
    strategy = make_strategy(streams["class"], active_classes=True, temperature=2.0)
    for exp in streams["class"].benchmark.train_stream[:2]:
        strategy.train(exp)  # FiniteLossCheck is not attached here: check the weights
    assert all(torch.isfinite(p).all() for p in strategy.model.parameters())


def test_replayed_classes_measure_what_the_frozen_solver_sees(streams):
    strategy = make_strategy(streams["class"])
    for exp in streams["class"].benchmark.train_stream[:2]:
        strategy.train(exp)
    state = torch.get_rng_state()
    tasks, labels = strategy.replay_plugin.replayed_classes(
        1000, rng=torch.Generator().manual_seed(0))
    assert torch.equal(torch.get_rng_state(), state)  # the global stream is untouched
    assert tasks.shape == labels.shape == (1000,) and set(labels.tolist()) <= {0, 1, 2, 3}
    again = strategy.replay_plugin.replayed_classes(1000, torch.Generator().manual_seed(0))
    assert torch.equal(again[1], labels)


def test_works_inside_lwf_on_task_il(streams):
    """LwF asks multi-head models for every head's output (task_labels=None)."""
    stream = streams["task"]
    torch.manual_seed(0)
    model = build_solver(stream.input_shape, stream.n_outputs, stream.n_experiences, TINY_SOLVER)
    plugin = BinVAEReplayPlugin(build_vae(stream.input_shape, TINY_VAE),
                                ReplayConfig(generator_iterations=10))
    strategy = LwF(model=model, optimizer=torch.optim.Adam(model.parameters(), 1e-3),
                   criterion=torch.nn.CrossEntropyLoss(), alpha=1.0, temperature=2.0,
                   train_mb_size=64, train_epochs=1, plugins=[plugin], evaluator=None)
    for exp in stream.benchmark.train_stream[:2]:
        short = copy.copy(exp)
        short.dataset = exp.dataset.subset(range(640))
        strategy.train(short)
    assert plugin.experiences_seen == 2 and plugin.frozen_solver is not None


def test_two_element_minibatches_without_task_labels(mnist):
    """Datasets of (x, y) pairs: no task labels anywhere, the plain model forward is used."""
    def experience_data(digits, n=200):
        mask = torch.isin(torch.from_numpy(mnist.y_train), torch.tensor(digits))
        x = torch.from_numpy(mnist.x_train[mask.numpy()][:n]).float().div(255).unsqueeze(1)
        y = torch.from_numpy(mnist.y_train[mask.numpy()][:n])
        return AvalancheDataset([TensorDataset(x, y)])

    data = [experience_data([0, 1]), experience_data([2, 3])]
    bm = benchmark_from_datasets(train=data, test=data)
    recorder = Recorder("before_forward")
    stream = type("S", (), {"n_experiences": 2, "input_shape": (1, 28, 28), "n_outputs": 10,
                            "config": StreamConfig()})()
    strategy = make_strategy(stream, plugins=[recorder])
    for exp in bm.train_stream:
        strategy.train(exp)
    last = recorder.calls[-1]["mbatch"]
    assert len(last) == 2 and len(last[0]) == 64
    assert set(last[1][32:].tolist()) <= {0, 1}


def test_normalized_inputs_are_refused_at_the_first_minibatch(streams):
    class Normalized(SupervisedPlugin):
        def before_training_iteration(self, strategy, **kwargs):
            strategy.mbatch[0] = (strategy.mbatch[0] - 0.1307) / 0.3081

    strategy = make_strategy(streams["class"])
    strategy.plugins.insert(0, Normalized())
    with pytest.raises(ValueError, match="input_mean"):
        strategy.train(streams["class"].benchmark.train_stream[0])
    assert strategy.clock.train_exp_iterations == 0


@pytest.mark.parametrize("kwargs, match", [
    ({"replay_size": 0}, "replay_size"),
    ({"temperature": 0.0}, "temperature"),
    ({"temperature": float("nan")}, "temperature"),
    ({"replay_weight": 1.5}, "replay_weight"),
    ({"input_mean": [0.1]}, "input_std"),
    ({"replay_labels": "oracle"}, "replay_labels"),
    ({"replay_labels": "prior", "temperature": 2.0}, "drop temperature"),
])
def test_bad_replay_config(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ReplayConfig(**kwargs)


def test_generator_of_the_wrong_shape_is_refused_before_training(streams):
    stream = streams["class"]
    model = build_solver(stream.input_shape, stream.n_outputs, 1, TINY_SOLVER)
    strategy = BinVAEGenerativeReplay(model=model, optimizer=torch.optim.Adam(model.parameters()),
                                      generator=build_vae((3, 32, 32), TINY_VAE), evaluator=None)
    with pytest.raises(ValueError, match=r"shape \(3, 32, 32\)"):
        strategy.train(stream.benchmark.train_stream[0])
    assert strategy.clock.train_exp_iterations == 0
    with pytest.raises(TypeError, match="BaseVAE"):
        BinVAEReplayPlugin(model)
    with pytest.raises(ValueError, match="class-conditional prior"):
        BinVAEReplayPlugin(build_vae((1, 28, 28), TINY_VAE), ReplayConfig(replay_labels="prior"))


def test_a_generator_built_without_a_prior_replays_from_the_fitted_prior(streams):
    """The default is the configuration the tables recommend: a plugin built around
    ``build_vae(shape, VAEConfig(...))`` with no prior samples replay from a fitted mixture."""
    from cl_binvae.model.priors import FittedPrior

    stream = streams["class"]
    generator = build_vae(stream.input_shape, VAEConfig(r=1.0, z_dim=8, hidden=(64,)))
    plugin = BinVAEReplayPlugin(generator, ReplayConfig(generator_iterations=15))
    assert isinstance(generator.prior, FittedPrior)
    model = build_solver(stream.input_shape, stream.n_outputs, 1, TINY_SOLVER)
    strategy = BinVAEGenerativeReplay(model=model, optimizer=torch.optim.Adam(model.parameters()),
                                      generator=generator, train_mb_size=32, train_iterations=15,
                                      evaluator=None)
    strategy.replay_plugin = strategy.plugins[0] = plugin
    strategy.train(stream.benchmark.train_stream[0])
    frozen = plugin.frozen_generator.prior
    assert isinstance(frozen, FittedPrior) and int(frozen.fits) == 1
    z, _ = frozen.sample(4000, rng=torch.Generator().manual_seed(0))
    # Replay draws from the mixture fitted to the latents, not from N(0, I).
    assert torch.allclose(z.mean(0), (frozen.log_weights.exp()[:, None] * frozen.means).sum(0),
                          atol=0.1)
    assert not torch.allclose(z.mean(0), torch.zeros(8), atol=0.1)
