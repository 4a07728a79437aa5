"""How a generative classifier trains its class VAEs and scores images. Plain Python, no torch."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class ClassifierConfig:
    """``iterations`` minibatches of ``batch_size`` images of its class train each class's
    VAE (Adam at ``lr``); ``importance_samples`` S score each image under each class.
    ``input_mean``/``input_std``: per channel, the normalization the inputs went through (as
    for replay), undone before the VAEs see them; ``pixel_mean``/``pixel_std``: the
    normalization the VAEs model their images under (a Gaussian likelihood on normalized
    pixels). None leaves pixels in [0, 1]."""

    iterations: int = 1000
    batch_size: int = 128
    lr: float = 1e-3
    importance_samples: int = 10_000
    input_mean: Sequence[float] | None = None
    input_std: Sequence[float] | None = None
    pixel_mean: Sequence[float] | None = None
    pixel_std: Sequence[float] | None = None

    def __post_init__(self) -> None:
        for name in ("iterations", "batch_size", "importance_samples"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be > 0, got {self.lr}")
        for what in ("input", "pixel"):
            mean, std = getattr(self, f"{what}_mean"), getattr(self, f"{what}_std")
            if (mean is None) != (std is None):
                raise ValueError(f"give both {what}_mean and {what}_std, or neither")
            if std is not None and any(s <= 0 for s in std):
                raise ValueError(f"{what}_std must be > 0, got {std}")

    @property
    def reported_samples(self) -> tuple[int, ...]:
        """The S at which accuracy is also reported: 1, 10, 100, ... below S, and S. One pass
        gives them all: an estimate at S' < S uses each image's first S' draws, which past
        the first image batch differ from those of a run with S = S' (the same
        distribution)."""
        counts = [10**k for k in range(7) if 10**k < self.importance_samples]
        return (*counts, self.importance_samples)
