"""The generative classifier: one binarized VAE per class, classes chosen by likelihood.

van de Ven, Li & Tolias, "Class-Incremental Learning with Generative Classifiers" (CVPR-W
2021; code GMvandeVen/class-incremental-learning), with the suite's VAE family, so r and the
prior are the run's (``--r``, ``--prior``). Its protocol is its own (no solver):

- ``paper``: the anchor's. Split-MNIST: per class an MLP VAE 784-85-85, z = 5, Bernoulli
  likelihood, 1000 iterations of 128 images, Adam 1e-3, S = 10,000. Split-CIFAR-10: a conv VAE
  of stride-2 layers with 15, 30 and 60 channels and batch norm, no hidden fc layer, z = 100,
  a Gaussian likelihood on per-channel normalized pixels, 2500 iterations of 256, Adam 1e-3,
  S = 10,000. Where our conv VAE differs from theirs: its encoder convolutions are 4x4 (theirs
  3x3) with batch norm and ReLU after the last one too, its decoder's first layer has a ReLU,
  and its log-variance head has a bias.
- ``cpu``: the same models and iterations, scored with fewer importance samples.

The anchor scores MNIST with a unit-variance Gaussian on the sigmoid outputs though it trains
with the Bernoulli likelihood; here every VAE is scored with the likelihood it was trained
with. Each run's diagnostics.csv gives the accuracy at S = 1, 10, 100, ... below its S (the
first S' of each image's draws), and the new classes' VAEs' reconstruction, KL and active units.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cl_binvae.model.config import PRIOR_NAMES, PriorConfig, VAEConfig
from cl_binvae.suite.registry import register_method
from cl_binvae.suite.replay_settings import PRIOR_HELP, GeneratorSettings
from cl_binvae.suite.settings import flag

if TYPE_CHECKING:
    from cl_binvae.suite.context import MethodContext

_CIFAR_MEAN, _CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
#: Importance samples of the cpu preset: what a CPU scores in minutes (the README's accuracy
#: against S and its Performance section give what the cut costs and what it saves).
CPU_SAMPLES = {"split_mnist": 1000, "split_cifar10": 100}


#: The most importance samples a run may ask for: scoring costs images x classes x S decoder
#: passes (split-MNIST at S = 10^4: about an hour on one CPU thread).
MAX_SAMPLES = 1_000_000


@dataclass(frozen=True)
class ClassifierSettings(GeneratorSettings):
    """r and the prior of every class's VAE (one VAE per class: no class codes), and the
    importance samples S that score an image under a class (None: the preset's). The
    defaults are the anchor's: r = 0 under N(0, I)."""

    prior: str = flag("mixture", PRIOR_HELP, choices=PRIOR_NAMES)

    importance_samples: int | None = flag(None, "importance samples S per image and class "
                                          "(the paper preset's is 10,000; the cpu preset's "
                                          "fewer)")

    def _check(self) -> None:
        super()._check()
        if self.prior_config(seed=0).conditional:
            raise ValueError(f"--prior {self.prior}: a class-conditional prior makes no sense "
                             "with one VAE per class; use mixture, standard or fitted")
        samples = self.importance_samples
        if samples is not None and not 1 <= samples <= MAX_SAMPLES:
            raise ValueError(f"--importance-samples must be in [1, {MAX_SAMPLES:,}], got "
                             f"{samples:,}: scoring costs images x classes x S decoder passes")

    def named_under(self, protocol: ClassifierProtocol) -> ClassifierSettings:
        """These settings as a run under ``protocol`` names them: S only where it is not the
        preset's own (one protocol, one name)."""
        if self.importance_samples == protocol.importance_samples:
            return dataclasses.replace(self, importance_samples=None)
        return self


@dataclass(frozen=True)
class ClassifierProtocol:
    """Each class's VAE, its training (``iterations`` minibatches of ``batch_size`` images of
    the class, Adam at ``lr``) and scoring (``importance_samples`` S), the per-channel
    normalization its Gaussian likelihood models pixels under (None: pixels in [0, 1]) and the
    evaluation batch (scores are drawn per evaluation batch)."""

    vae: VAEConfig
    iterations: int
    batch_size: int
    importance_samples: int
    lr: float = 1e-3
    pixel_mean: tuple[float, ...] | None = None
    pixel_std: tuple[float, ...] | None = None
    eval_batch_size: int = 1000

    def cut(self, iterations: int) -> ClassifierProtocol:
        """This protocol with ``iterations`` minibatches per class."""
        return dataclasses.replace(self, iterations=iterations)

    def configured(self, settings: ClassifierSettings, seed: int) -> ClassifierProtocol:
        """Every class's VAE with the run's r and prior, and the run's S if it sets one."""
        samples = settings.importance_samples or self.importance_samples
        return dataclasses.replace(self, vae=settings.vae_config(self.vae, seed),
                                   importance_samples=samples)


_STANDARD = PriorConfig("mixture")  # at r = 0: N(0, I), the anchor's prior
_PAPER = {
    "split_mnist": ClassifierProtocol(
        VAEConfig(hidden=(85, 85), z_dim=5, prior=_STANDARD), iterations=1000,
        batch_size=128, importance_samples=10_000),
    "split_cifar10": ClassifierProtocol(
        VAEConfig(arch="conv", channels=(15, 30, 60), z_dim=100, likelihood="gaussian",
                  prior=_STANDARD), iterations=2500, batch_size=256,
        importance_samples=10_000, pixel_mean=_CIFAR_MEAN, pixel_std=_CIFAR_STD),
}


def protocol(preset: str, stream: str) -> ClassifierProtocol:
    """The ``paper`` or ``cpu`` protocol for ``stream``: CIFAR-10's for split-CIFAR-10,
    split-MNIST's MLP VAEs for the others (permuted-MNIST, a user's .npz)."""
    source = "split_cifar10" if stream == "split_cifar10" else "split_mnist"
    paper = _PAPER[source]
    if preset == "paper":
        return paper
    return dataclasses.replace(paper, importance_samples=CPU_SAMPLES[source])


def _samples(strategy: Any, n: int) -> Any:
    """Images from each class's VAE, class by class, for the sample grids."""
    import torch

    model = strategy.model
    per_class = max(1, n // max(1, len(model.classes)))
    images = []
    for key in model.classes:
        vae = model.vae(*key)
        with vae.inference():  # a frozen VAE's batch-norm statistics must not move
            images.append(model.to_images(vae.sample(per_class)))
    return torch.cat(images)


def _diagnose(strategy: Any, test_stream: Any, i: int) -> dict[str, float]:
    """After experience ``i``: the average accuracy over the experiences seen so far at each
    reported S, and the new classes' VAEs' diagnostics on their test images."""
    import torch

    from cl_binvae.model.diagnostics import diagnose
    from cl_binvae.training.tensor_batches import dataset_tensors

    model = strategy.model
    model.eval()
    row: dict[str, float] = {"experience": i}
    parts = [dataset_tensors(e.dataset, strategy.device) for e in test_stream[:i + 1]]
    # The evaluator's batches: scores are kept per batch, so these are the ones it computed.
    size = strategy.eval_mb_size
    for samples in model.config.reported_samples:
        accuracies = []
        for x, y, *rest in parts:
            t = rest[-1] if rest else None
            scores = torch.cat([model.scores(x[s:s + size], None if t is None else
                                             t[s:s + size], samples)
                                for s in range(0, len(x), size)])
            accuracies.append(float((scores.argmax(1) == y).float().mean()))
        row[f"accuracy_S{samples}"] = sum(accuracies) / len(accuracies)
    stats = []
    for task, label in strategy.new_classes:
        x, y, *rest = parts[-1]
        t = rest[-1] if rest else torch.zeros_like(y)
        own = (t == task) & (y == label)
        vae = model.vae(task, label)
        stats.append(diagnose(vae, model.to_vae_space(x[own]), k=1))
    for key in ("recon", "kl", "active_units"):
        row[key] = sum(s[key] for s in stats) / len(stats)
    return row


@register_method("gen_classifier", scenarios=("class", "task"), resumable=True,
                 settings=ClassifierSettings(), protocol=protocol, r_baseline="gen_classifier",
                 samples=_samples, diagnose=_diagnose, rank=60)
def gen_classifier(ctx: MethodContext) -> Any:
    """one VAE of radius --r per class, classes chosen by likelihood (van de Ven et al. 2021)"""
    from cl_binvae.classifier.config import ClassifierConfig
    from cl_binvae.classifier.model import GenerativeClassifier
    from cl_binvae.classifier.strategy import GenerativeClassifierStrategy

    protocol = ctx.protocol
    config = ClassifierConfig(iterations=protocol.iterations, batch_size=protocol.batch_size,
                              lr=protocol.lr, importance_samples=protocol.importance_samples,
                              pixel_mean=protocol.pixel_mean, pixel_std=protocol.pixel_std)
    model = GenerativeClassifier(ctx.stream.input_shape, ctx.stream.n_outputs, protocol.vae,
                                 config, seed=ctx.run.seed)
    return GenerativeClassifierStrategy(model=model, device=ctx.device, plugins=ctx.plugins,
                                        evaluator=ctx.evaluator,
                                        eval_mb_size=protocol.eval_batch_size)
