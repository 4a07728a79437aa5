"""Plugins the driver attaches to every strategy it runs, whatever the method.

``ProgressBar`` shows each experience's iterations, ``FiniteLossCheck`` stops a diverged run
before a NaN reaches the weights, and ``EpochBudget`` gives strategies that count epochs
(Avalanche's replay loaders) the protocol's budget of iterations per experience.
"""

from __future__ import annotations

from typing import Any

import torch
from avalanche.core import SupervisedPlugin
from tqdm.auto import tqdm


class ProgressBar(SupervisedPlugin):
    """A tqdm bar over each experience's training iterations."""

    def __init__(self, label: str, enabled: bool) -> None:
        super().__init__()
        self.label, self.enabled, self.bar = label, enabled, None

    def before_training_epoch(self, strategy: Any, **kwargs: Any) -> None:
        """Open the bar at the first epoch of an experience."""
        if self.enabled and self.bar is None:
            exp = strategy.experience.current_experience
            total = len(strategy.dataloader) * strategy.train_epochs
            self.bar = tqdm(total=total, desc=f"{self.label} exp {exp}", leave=False,
                            unit="it", mininterval=0.5)

    def after_training_iteration(self, strategy: Any, **kwargs: Any) -> None:
        """Advance the bar."""
        if self.bar is not None:
            self.bar.update()

    def after_training_exp(self, strategy: Any, **kwargs: Any) -> None:
        """Close the bar."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class FiniteLossCheck(SupervisedPlugin):
    """Raise ``FloatingPointError`` when the solver's loss is NaN or infinite.

    Checked before the backward pass, so no NaN reaches the weights, and a diverged run stops
    with a message instead of finishing with a meaningless accuracy matrix.
    """

    def before_backward(self, strategy: Any, **kwargs: Any) -> None:
        """Check the minibatch loss the strategy is about to backpropagate."""
        if not torch.isfinite(strategy.loss):
            raise FloatingPointError(
                f"solver loss is {strategy.loss.item()} in experience "
                f"{strategy.clock.train_exp_counter}, iteration "
                f"{strategy.clock.train_epoch_iterations}; lower the learning rate or check "
                "the inputs")


class EpochBudget(SupervisedPlugin):
    """Set ``train_epochs`` so that an experience costs about ``iterations`` minibatches of
    ``batch_size`` (at least one epoch), like the protocol's iteration-counting strategies."""

    def __init__(self, iterations: int, batch_size: int) -> None:
        super().__init__()
        self.iterations, self.batch_size = iterations, batch_size

    def before_training_exp(self, strategy: Any, **kwargs: Any) -> None:
        """Turn the budget into epochs of this experience's data."""
        size = len(strategy.experience.dataset)
        strategy.train_epochs = max(1, round(self.iterations * self.batch_size / size))
