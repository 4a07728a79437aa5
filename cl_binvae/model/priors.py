"""Latent priors: the distribution a generator's replay draws its latents from.

Hu & Rostami (2023) do not say how new latents are drawn once a binarized VAE is trained, and
KL_r charges a latent only for its distance to the *nearer* mode +-r, so the aggregate
posterior need not look like any fixed prior. Every prior here has one interface:

- ``observe(classes)``: the labels of the data the generator is about to learn (a conditional
  prior gives a new class its code here; the others ignore it);
- ``kl(mu, logvar, classes)``: the KL term of the generator's training loss, per dimension;
- ``sample(n)``: ``n`` latents and, for a conditional prior, the class of each;
- ``fit(z)``: after the generator trained, fit to latents of what it was trained on;
- ``log_prob(z)``: the marginal log-density, for the importance-weighted likelihood;
- ``state_dict()``: priors are ``nn.Module``s whose buffers hold their state, so a generator's
  state_dict (and so the replay plugin's) carries its prior.

The priors (``PRIORS``):

- ``mixture``: the fair-sign mixture 0.5 N(r, 1) + 0.5 N(-r, 1) per dimension, the paper-literal
  choice; at r = 0 it is N(0, I);
- ``standard``: N(0, I) whatever r is (what the paper's public code scores against);
- ``fitted``: ex-post density estimation (Ghosh et al. 2020): a diagonal Gaussian mixture of K
  components fitted to posterior samples after each experience;
- ``codes``: class-conditional. Class c gets a fixed binary code b_c in {-1, +1}^z when first
  observed; its latent mode is r b_c and a labelled image's KL is KL(q(z|x) || N(r b_c, I)).
  r sets how far apart classes sit; a new class never moves an old class's mode.

The first three train with KL_r and differ only in what they sample; ``codes`` also changes
the training KL, and needs the class of every image it scores.
"""

from __future__ import annotations

import abc
import math
from typing import Any

import numpy as np
import torch
from torch import nn

from cl_binvae.model.config import PriorConfig, check_radius
from cl_binvae.model.regularizer import LOG_2PI, kl_r, mixture_log_prob, sample_mixture

__all__ = ["PRIORS", "CodesPrior", "FittedPrior", "LatentPrior", "MixturePrior", "PriorConfig",
           "StandardPrior", "build_prior"]


class LatentPrior(nn.Module, abc.ABC):
    """Shared interface; unconditional priors train with KL_r and have nothing to observe."""

    conditional = False  # samples come with classes, and the KL needs them

    def __init__(self, r: float, z_dim: int) -> None:
        super().__init__()
        self.r, self.z_dim = check_radius(r), int(z_dim)

    def observe(self, classes: torch.Tensor) -> None:
        """See the labels of the data the generator is about to learn."""

    def kl(self, mu: torch.Tensor, logvar: torch.Tensor,
           classes: torch.Tensor | None = None) -> torch.Tensor:
        """The training loss's KL per latent dimension, shape of ``mu``: KL_r."""
        return kl_r(mu, logvar, self.r)

    @abc.abstractmethod
    def sample(self, n: int, device: torch.device | str | None = None,
               rng: torch.Generator | None = None
               ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``n`` latents (n, z_dim) on ``device``, and their classes (None: unconditional)."""

    @abc.abstractmethod
    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """Marginal log-density of ``z``, summed over the last axis."""

    def fit(self, z: torch.Tensor) -> None:
        """Fit to posterior samples ``z`` (N, z_dim) of the generator's training data."""

    def check_fit_size(self, n: int) -> None:
        """``ValueError`` if ``fit`` cannot use ``n`` latents: checked before a generator
        trains on that many images, so that a run fails before it spends its iterations."""

    @property
    def needs_fit(self) -> bool:
        """Whether ``fit`` changes this prior (the plugin skips encoding data otherwise)."""
        return False

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str,
                              *args: Any, **kwargs: Any) -> None:
        # Buffers grow as classes arrive or a mixture is fitted: take the saved shapes.
        for name, buffer in self._buffers.items():
            if buffer is not None and prefix + name in state_dict:
                saved = state_dict[prefix + name]
                self._buffers[name] = torch.empty_like(saved, device=buffer.device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


class MixturePrior(LatentPrior):
    """0.5 N(r, 1) + 0.5 N(-r, 1) per dimension, with fair signs: the paper-literal prior."""

    def sample(self, n: int, device: torch.device | str | None = None,
               rng: torch.Generator | None = None
               ) -> tuple[torch.Tensor, torch.Tensor | None]:
        return sample_mixture(n, self.z_dim, self.r, device=device, rng=rng), None

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        return mixture_log_prob(z, self.r)


class StandardPrior(LatentPrior):
    """N(0, I), whatever r the generator trained with."""

    def sample(self, n: int, device: torch.device | str | None = None,
               rng: torch.Generator | None = None
               ) -> tuple[torch.Tensor, torch.Tensor | None]:
        return torch.randn(n, self.z_dim, device=device, generator=rng), None

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        return mixture_log_prob(z, 0.0)


class FittedPrior(LatentPrior):
    """A diagonal Gaussian mixture of ``components`` components, refitted by ``fit``."""

    def __init__(self, r: float, z_dim: int, components: int, seed: int) -> None:
        super().__init__(r, z_dim)
        self.components, self.seed = components, seed
        self.register_buffer("log_weights", torch.zeros(0))
        self.register_buffer("means", torch.zeros(0, z_dim))
        self.register_buffer("log_vars", torch.zeros(0, z_dim))
        self.register_buffer("fits", torch.zeros((), dtype=torch.long))

    @property
    def needs_fit(self) -> bool:
        return True

    def check_fit_size(self, n: int) -> None:
        if n < self.components:
            raise ValueError(f"fitted prior: {n} latents cannot fit {self.components} "
                             "components")

    def fit(self, z: torch.Tensor) -> None:
        """EM for a diagonal mixture (scikit-learn), seeded by ``seed`` and the fit count."""
        # Imported here: only this prior needs scikit-learn, and it is slow to import.
        from sklearn.mixture import GaussianMixture

        data = z.detach().cpu().double().numpy()
        if data.ndim != 2 or data.shape[1] != self.z_dim:
            raise ValueError(f"fitted prior: latents must be (N, {self.z_dim}), got {data.shape}")
        self.check_fit_size(len(data))
        if not np.isfinite(data).all():
            raise ValueError("fitted prior: the latents hold NaN or inf")
        gmm = GaussianMixture(self.components, covariance_type="diag", reg_covar=1e-4,
                              max_iter=200, random_state=self.seed + int(self.fits))
        gmm.fit(data)

        def buffer(a: np.ndarray) -> torch.Tensor:
            return torch.as_tensor(a, dtype=torch.float32, device=self.means.device)

        self.log_weights = buffer(np.log(gmm.weights_))
        self.means = buffer(gmm.means_)
        self.log_vars = buffer(np.log(gmm.covariances_))
        self.fits += 1

    def sample(self, n: int, device: torch.device | str | None = None,
               rng: torch.Generator | None = None
               ) -> tuple[torch.Tensor, torch.Tensor | None]:
        self._check_fitted()
        device = device if device is not None else self.means.device
        weights = self.log_weights.exp().to(device)
        k = torch.multinomial(weights, n, replacement=True, generator=rng)
        eps = torch.randn(n, self.z_dim, device=device, generator=rng)
        return self.means.to(device)[k] + (0.5 * self.log_vars.to(device)[k]).exp() * eps, None

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        self._check_fitted()
        diff = z.unsqueeze(-2) - self.means  # (..., K, z)
        per_dim = -0.5 * (diff.pow(2) * (-self.log_vars).exp() + self.log_vars + LOG_2PI)
        return torch.logsumexp(self.log_weights + per_dim.sum(-1), dim=-1)

    def _check_fitted(self) -> None:
        if self.log_weights.numel() == 0:
            raise RuntimeError("the fitted prior has not been fitted yet: call fit(z) on "
                               "latents of the generator's training data first")


class CodesPrior(LatentPrior):
    """Class-conditional binarized prior: class c's latents are N(r b_c, I).

    Codes are drawn from a generator seeded by ``seed`` and the class's rank, so they depend on
    the seed and the order classes arrive in, nothing else. Each new code is the best of
    ``CANDIDATES`` random codes (largest Hamming distance to the codes so far) and must differ
    from every earlier one in at least a quarter of its bits; so at most z_dim classes.
    """

    conditional = True
    CANDIDATES = 1024

    def __init__(self, r: float, z_dim: int, seed: int) -> None:
        super().__init__(r, z_dim)
        self.seed = seed
        self.min_distance = math.ceil(z_dim / 4)
        self.register_buffer("classes", torch.zeros(0, dtype=torch.long))  # in arrival order
        self.register_buffer("codes", torch.zeros(0, z_dim))  # row i: code of classes[i]
        self.register_buffer("lookup", torch.zeros(0, dtype=torch.long))  # class -> row, or -1

    @staticmethod
    def capacity(z_dim: int) -> int:
        """How many classes codes of length ``z_dim`` keep well apart."""
        return z_dim

    @property
    def max_classes(self) -> int:
        """How many classes this prior's codes keep well apart."""
        return self.capacity(self.z_dim)

    def observe(self, classes: torch.Tensor) -> None:
        """Give each new class (in ascending order) its code; known classes keep theirs."""
        known = set(self.classes.tolist())
        new = [c for c in torch.unique(classes.detach().cpu()).tolist() if c not in known]
        if not new:
            return
        if min(new) < 0:
            raise ValueError(f"codes prior: class labels must be >= 0, got {min(new)}")
        if len(self.classes) + len(new) > self.max_classes:
            raise ValueError(
                f"codes prior: {len(self.classes) + len(new)} classes, but codes of length "
                f"z_dim={self.z_dim} keep at most {self.max_classes} classes apart; "
                "raise z_dim or use another prior")
        codes = self.codes.cpu()
        for _ in new:
            codes = torch.cat([codes, self._new_code(codes).unsqueeze(0)])
        device = self.codes.device
        self.classes = torch.cat([self.classes.cpu(), torch.tensor(new)]).to(device)
        self.codes = codes.to(device)
        lookup = torch.full((int(self.classes.max()) + 1,), -1, dtype=torch.long)
        lookup[self.classes.cpu()] = torch.arange(len(self.classes))
        self.lookup = lookup.to(device)

    def _new_code(self, codes: torch.Tensor) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + len(codes))
        candidates = torch.randint(0, 2, (self.CANDIDATES, self.z_dim), generator=g) * 2.0 - 1
        if len(codes) == 0:
            return candidates[0]
        # Hamming distance of +-1 codes: (z - <a, b>) / 2.
        nearest = ((self.z_dim - candidates @ codes.T) / 2).min(1).values
        best = int(nearest.argmax())
        if nearest[best] < self.min_distance:
            raise ValueError(f"codes prior: no code for class number {len(codes) + 1} differs "
                             f"from the others in {self.min_distance} of {self.z_dim} bits; "
                             "raise z_dim")
        return candidates[best]

    def modes(self, classes: torch.Tensor | None) -> torch.Tensor:
        """r b_c for each class in ``classes``: shape (N, z_dim)."""
        if classes is None:
            raise ValueError("the codes prior needs the class of every image: pass classes")
        if len(self.classes) == 0:
            raise ValueError("codes prior: no class observed yet; call observe(classes) first")
        classes = classes.to(self.lookup.device)
        inside = (classes >= 0) & (classes < len(self.lookup))
        rows = self.lookup[classes.clamp(0, len(self.lookup) - 1)]
        if not bool((inside & (rows >= 0)).all()):
            unseen = sorted(set(classes.tolist()) - set(self.classes.tolist()))
            raise ValueError(f"codes prior: classes {unseen} were never observed")
        return self.r * self.codes[rows]

    def kl(self, mu: torch.Tensor, logvar: torch.Tensor,
           classes: torch.Tensor | None = None) -> torch.Tensor:
        return 0.5 * ((mu - self.modes(classes)).pow(2) + logvar.exp() - logvar - 1.0)

    def sample(self, n: int, device: torch.device | str | None = None,
               rng: torch.Generator | None = None
               ) -> tuple[torch.Tensor, torch.Tensor | None]:
        if len(self.classes) == 0:
            raise ValueError("codes prior: no class observed yet; call observe(classes) first")
        device = device if device is not None else self.codes.device
        pick = torch.randint(len(self.classes), (n,), device=device, generator=rng)
        classes = self.classes.to(device)[pick]
        eps = torch.randn(n, self.z_dim, device=device, generator=rng)
        return self.r * self.codes.to(device)[pick] + eps, classes

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """log of the uniform mixture over the observed classes of N(r b_c, I)."""
        if len(self.classes) == 0:
            raise ValueError("codes prior: no class observed yet; call observe(classes) first")
        diff = z.unsqueeze(-2) - self.r * self.codes  # (..., C, z)
        per_class = (-0.5 * (diff.pow(2) + LOG_2PI)).sum(-1)
        return torch.logsumexp(per_class, dim=-1) - math.log(len(self.classes))


#: Prior names and how to build each from its config, the generator's r and latent size.
PRIORS = {
    "mixture": lambda cfg, r, z_dim: MixturePrior(r, z_dim),
    "standard": lambda cfg, r, z_dim: StandardPrior(r, z_dim),
    "fitted": lambda cfg, r, z_dim: FittedPrior(r, z_dim, cfg.components, cfg.seed),
    "codes": lambda cfg, r, z_dim: CodesPrior(r, z_dim, cfg.seed),
}


def build_prior(config: PriorConfig, r: float, z_dim: int) -> LatentPrior:
    """The prior ``config`` names, for a generator with radius ``r`` and ``z_dim`` latents."""
    return PRIORS[config.name](config, r, z_dim)
