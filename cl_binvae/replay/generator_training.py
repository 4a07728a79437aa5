"""The generator's side of replay: learning an experience plus its own replay, then fitting
its prior to what it learnt.

Deep generative replay's generator forgets too, unless it rehearses: while it learns
experience t it also learns samples of its frozen copy, its loss weighted like the solver's,
(1 - w) current + w replay. A fitted prior is then fitted to posterior samples of the same
mixture (Ghosh et al. 2020's ex-post density estimation).
"""

from __future__ import annotations

import torch

from cl_binvae.model.config import FIT_SAMPLES
from cl_binvae.model.vae import BaseVAE
from cl_binvae.training.tensor_batches import TensorBatches

#: Generator samples decoded at once outside the training loop.
SAMPLE_CHUNK = 1_000


def train_generator(generator: BaseVAE, optimizer: torch.optim.Optimizer, x: torch.Tensor,
                    classes: torch.Tensor | None, frozen: BaseVAE | None, replay_weight: float,
                    iterations: int, batch_size: int) -> None:
    """Train ``generator`` for ``iterations`` minibatches of ``x`` (in [0, 1] space), each
    joined by as many samples of ``frozen`` (its copy after the last experience; None on the
    first), the replay loss weighted by ``replay_weight``.

    ``classes``: the prior's class id of each image, for a class-conditional prior.
    """
    generator.train()
    tensors = [x] if classes is None else [x, classes]
    for xb, *cb in TensorBatches(tensors, batch_size, iterations=iterations):
        loss = generator.loss(xb, *cb)["loss"]
        if frozen is not None:
            replay, replay_classes = frozen.sample_with_classes(len(xb))
            loss = (1 - replay_weight) * loss + replay_weight * generator.loss(
                replay, replay_classes)["loss"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    generator.eval()


def fit_prior(generator: BaseVAE, x: torch.Tensor, frozen: BaseVAE | None,
              replay_weight: float) -> None:
    """Fit the generator's prior, if it is fitted, to ``FIT_SAMPLES`` posterior samples of
    what it was just trained on: images of ``x`` and samples of ``frozen``, in the
    proportions of its loss."""
    if not generator.prior.needs_fit:
        return
    n_replay = 0 if frozen is None else round(replay_weight * FIT_SAMPLES)
    pick = torch.randint(len(x), (FIT_SAMPLES - n_replay,), device=x.device)
    images = [x[pick]] + [frozen.sample(min(SAMPLE_CHUNK, n_replay - i))
                          for i in range(0, n_replay, SAMPLE_CHUNK)]
    generator.fit_prior(torch.cat(images))
