"""Between the solver's inputs and the generator's [0, 1] images.

Streams often normalize their inputs (MNIST: mean 0.1307, sd 0.3081) while a Bernoulli
generator models pixels in [0, 1]: replay undoes the normalization before the generator
learns and redoes it on what the generator makes.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


class Normalization:
    """Per-channel ``(x - mean) / std``; with no mean and std, the identity."""

    def __init__(self, mean: Sequence[float] | None, std: Sequence[float] | None) -> None:
        self.mean, self.std = mean, std

    def _stats(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        shape = (1, -1) + (1,) * (like.ndim - 2)
        mean = torch.as_tensor(self.mean, dtype=like.dtype, device=like.device)
        std = torch.as_tensor(self.std, dtype=like.dtype, device=like.device)
        return mean.view(shape), std.view(shape)

    def undo(self, x: torch.Tensor) -> torch.Tensor:
        """Solver inputs -> the generator's [0, 1] images."""
        if self.mean is None:
            return x
        mean, std = self._stats(x)
        # Undoing a normalization leaves rounding error (pixel 0 comes back as -3e-8).
        return (x * std + mean).clamp(0.0, 1.0)

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """The generator's images -> solver inputs."""
        if self.mean is None:
            return x
        mean, std = self._stats(x)
        return (x - mean) / std
