"""``GenerativeClassifierStrategy``: the Avalanche strategy that grows and trains a
``GenerativeClassifier``.

Each training experience adds a VAE for each of its new classes (the model's ``adaptation``)
and trains them side by side: every iteration takes ``batch_size`` images of each new class
and steps each VAE on its own class's images (their losses are summed, and as the VAEs share
no parameter, one Adam step over the sum is each VAE's own step). After the experience a
fitted prior is fitted to each new VAE's latents, and the VAEs are frozen. Evaluation is
Avalanche's: the model's outputs are the classes' log-likelihoods.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from avalanche.core import BasePlugin
from avalanche.training.plugins.evaluation import default_evaluator
from torch import nn

from cl_binvae.classifier.model import GenerativeClassifier
from cl_binvae.training.tensor_batches import ClassBatches, dataset_tensors
from cl_binvae.training.tensor_strategy import TensorStrategy


class GenerativeClassifierStrategy(TensorStrategy):
    """Trains ``model``'s class VAEs for ``model.config.iterations`` minibatches of
    ``model.config.batch_size`` images per class, Adam at ``model.config.lr``. It evaluates
    only between experiences (Avalanche's ``eval_every=-1``): scores are kept once computed, so
    a class must not be scored before its training ends and its prior is fitted."""

    def __init__(self, *, model: GenerativeClassifier, device: str | torch.device = "cpu",
                 plugins: Sequence[BasePlugin] | None = None, evaluator: Any = default_evaluator,
                 eval_mb_size: int = 1000) -> None:
        config = model.config
        # No class yet, so no parameter: Avalanche puts the model's parameters in before the
        # first experience, and each new class's as it arrives.
        optimizer = torch.optim.Adam([{"params": []}], lr=config.lr)
        super().__init__(model=model, optimizer=optimizer, criterion=nn.CrossEntropyLoss(),
                         train_mb_size=config.batch_size, train_epochs=1,
                         eval_mb_size=eval_mb_size, device=device, plugins=plugins,
                         evaluator=evaluator, eval_every=-1,
                         train_iterations=config.iterations)
        self.new_classes: list[tuple[int, int]] = []
        self._class_sizes: dict[tuple[int, int], int] = {}  # training images per new class
        self._vae_loss: torch.Tensor | None = None

    def make_train_dataloader(self, shuffle: bool = True, **kwargs: Any) -> None:
        x, y, *rest = dataset_tensors(self.adapted_dataset, self.device, eval_mode=False)
        t = rest[-1] if rest else torch.zeros_like(y)
        labels = torch.stack([t, y], 1)
        keys, counts = labels.unique(dim=0, return_counts=True)
        self._class_sizes = dict(zip(map(tuple, keys.tolist()), counts.tolist(), strict=True))
        self.dataloader = ClassBatches([x, y, t], labels=labels, batch_size=self.train_mb_size,
                                       iterations=self.train_iterations)

    def _before_training_exp(self, **kwargs: Any) -> None:
        known = set(self.model.classes)
        super()._before_training_exp(**kwargs)  # the model grows its new classes here
        self.new_classes = [key for key in self.model.classes if key not in known]
        for task, label in self.new_classes:  # a prior fitted after training must fit
            try:
                self.model.vae(task, label).prior.check_fit_size(
                    self._class_sizes[task, label])
            except ValueError as err:
                raise ValueError(f"class {label} of task {task}: {err}") from None

    def forward(self) -> torch.Tensor:
        """Evaluation: the model's scores. Training: each new class's VAE steps on its
        class's images; the outputs, for training metrics that read them, are one-pass
        scores under the experience's new classes: minus the training loss (reconstruction
        plus KL_r) at the posterior mean, not the likelihood that evaluation estimates."""
        if not self.is_training:
            return super().forward()
        model: GenerativeClassifier = self.model
        x = model.to_vae_space(self.mb_x)
        y, t = self.mb_y, self.mb_task_id
        losses = []
        for task, label in self.new_classes:
            rows = (t == task) & (y == label)
            losses.append(model.vae(task, label).loss(x[rows])["loss"])
        self._vae_loss = torch.stack(losses).sum()
        return self._training_outputs(x, t) if _reads_training_outputs(self.evaluator) else \
            torch.empty(0)

    def criterion(self) -> torch.Tensor:
        """Training: the summed VAE losses; evaluation: cross-entropy of the scores (minus
        the log posterior of the true class under a uniform class prior)."""
        if self.is_training:
            return self._vae_loss
        return super().criterion()

    def _after_training_exp(self, **kwargs: Any) -> None:
        """Fit each new class's prior to its latents, then freeze its VAE."""
        x, y, *rest = dataset_tensors(self.experience.dataset, self.device)
        t = rest[-1] if rest else torch.zeros_like(y)
        model: GenerativeClassifier = self.model
        x = model.to_vae_space(x)
        for task, label in self.new_classes:
            vae = model.vae(task, label)
            vae.eval()
            vae.fit_prior(x[(t == task) & (y == label)])
            vae.requires_grad_(False)
        super()._after_training_exp(**kwargs)

    def _training_outputs(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        model: GenerativeClassifier = self.model
        out = torch.full((len(x), model.n_outputs), -torch.inf, device=x.device)
        with torch.no_grad():
            for task, label in self.new_classes:
                vae = model.vae(task, label)
                vae.eval()
                rows = t == task
                outputs, mu, logvar = vae(x[rows])
                out[rows, label] = -(vae.reconstruction_nll(x[rows], outputs)
                                     + vae.prior.kl(mu, logvar).sum(1))
                vae.train()
        return out


def _reads_training_outputs(evaluator: Any) -> bool:
    """Whether a training-phase metric of ``evaluator`` reads the minibatch's outputs
    (scoring each training image under every new class costs a pass per class)."""
    metrics = getattr(evaluator, "metrics", [])
    return any(getattr(metric, "_mode", None) == "train" for metric in metrics)
