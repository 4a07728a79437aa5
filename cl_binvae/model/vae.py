"""The binarized VAE family: one interface (encode, decode, sample, loss) for every variant.

Variants differ only in how the KL term enters the loss (``VAEConfig.variant``):

- ``vae``: reconstruction + KL_r (beta = 1);
- ``beta``: reconstruction + beta * KL_r (Higgins et al. 2017);
- ``capacity``: reconstruction + beta * |KL_r - C|, C annealed linearly from 0 to ``capacity_max``
  over ``capacity_steps`` training losses, per sample (Burgess et al. 2018).

Architectures (``MLPVAE``, ``ConvVAE``) only define the encoder and decoder; the rest is shared.
Every variant takes the binarization radius ``r`` (r = 0 is the ordinary model) and a latent
prior (``cl_binvae.model.priors``): what ``sample`` draws from, and for the class-conditional prior
also the KL term, which then needs the class of every image.
"""

from __future__ import annotations

import abc
import itertools
import math
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from cl_binvae.model.config import VARIANTS, VAEConfig
from cl_binvae.model.priors import build_prior
from cl_binvae.model.regularizer import LOG_2PI

__all__ = ["MLPVAE", "VARIANTS", "BaseVAE", "ConvVAE", "VAEConfig", "build_vae"]


class BaseVAE(nn.Module, abc.ABC):
    """Shared VAE machinery; subclasses build ``encoder`` (x -> features) and ``decode``."""

    def __init__(self, input_shape: tuple[int, ...], config: VAEConfig) -> None:
        super().__init__()
        self.input_shape = tuple(int(s) for s in input_shape)
        self.config = config
        self.prior = build_prior(config.prior, config.r, config.z_dim)
        # Counts training-mode losses: drives the capacity schedule and is checkpointed with it.
        self.register_buffer("train_steps", torch.zeros((), dtype=torch.long))

    # -- the interface -------------------------------------------------------------------------
    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the posterior's mean and log-variance, each of shape (N, z_dim)."""
        h = self.encoder(x)
        return self.fc_mu(h), self.fc_logvar(h)

    @abc.abstractmethod
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Return decoder outputs of shape (N, *input_shape): logits (Bernoulli) or means."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Encode, sample with the reparameterization trick, decode: (outputs, mu, logvar)."""
        mu, logvar = self.encode(x)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp() if self.training else mu
        return self.decode(z), mu, logvar

    def to_data(self, outputs: torch.Tensor) -> torch.Tensor:
        """Map decoder outputs to the data space (probabilities for Bernoulli, means otherwise)."""
        return torch.sigmoid(outputs) if self.config.likelihood == "bernoulli" else outputs

    def sample(self, n: int, rng: torch.Generator | None = None) -> torch.Tensor:
        """Draw ``n`` images from the prior, in the data space."""
        return self.sample_with_classes(n, rng)[0]

    @torch.no_grad()
    def sample_with_classes(self, n: int, rng: torch.Generator | None = None
                            ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``n`` images from the prior and, for a class-conditional prior, their classes."""
        z, classes = self.prior.sample(n, device=self.fc_mu.weight.device, rng=rng)
        return self.to_data(self.decode(z)), classes

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Decode the posterior mean of ``x``, in the data space."""
        return self.to_data(self.decode(self.encode(x)[0]))

    def reconstruction_nll(self, x: torch.Tensor, outputs: torch.Tensor) -> torch.Tensor:
        """-log p(x | z) per decoded image, in nats (a unit-variance Gaussian includes its
        constant): shape (N,) for outputs shaped like the images ``x`` (N, ...), or (m, N)
        for outputs of m draws per image, (m, N, ...), scored without repeating the images.
        """
        draws = outputs.shape[:outputs.ndim - x.ndim]
        if self.config.likelihood == "gaussian":
            nll = 0.5 * (outputs - x).pow(2) + 0.5 * LOG_2PI
            return nll.flatten(len(draws) + 1).sum(-1)
        if not draws:
            nll = F.binary_cross_entropy_with_logits(outputs, x, reduction="none")
            return nll.flatten(1).sum(1)
        # BCE(o, x) = softplus(o) - x o: the images enter as one product per draw.
        flat = outputs.flatten(len(draws) + 1)
        return F.softplus(flat).sum(-1) - torch.einsum("...nd,nd->...n", flat, x.flatten(1))

    def capacity(self) -> float:
        """The current capacity target C in nats (0 for the other variants)."""
        if self.config.variant != "capacity":
            return 0.0
        frac = min(1.0, int(self.train_steps) / self.config.capacity_steps)
        return frac * self.config.capacity_max

    def loss(self, x: torch.Tensor, classes: torch.Tensor | None = None
             ) -> dict[str, torch.Tensor]:
        """The variant's training loss on a batch: {'loss', 'recon', 'kl'}, means over samples.

        ``classes``: the class of each image, which a class-conditional prior needs.

        In training mode this advances the capacity schedule by one step. Raises ``ValueError``
        for inputs the likelihood cannot score and ``FloatingPointError`` for a non-finite loss.
        """
        self.check_inputs(x)
        outputs, mu, logvar = self(x)
        recon = self.reconstruction_nll(x, outputs)
        kl = self.prior.kl(mu, logvar, classes).sum(1)
        if self.config.variant == "capacity":
            reg = self.config.beta * (kl - self.capacity()).abs()
        else:
            reg = self.config.beta * kl
        total = (recon + reg).mean()
        if not torch.isfinite(total):
            raise FloatingPointError(
                f"VAE loss is {total.item()} (recon {recon.mean().item()}, "
                f"KL {kl.mean().item()}); lower the learning rate or check the inputs")
        if self.training:
            self.train_steps += 1
        return {"loss": total, "recon": recon.mean().detach(), "kl": kl.mean().detach()}

    @contextmanager
    def inference(self) -> Iterator[None]:
        """Eval mode (posterior mean, batch norm's running statistics) without gradients
        while the body runs; the model's mode is restored after."""
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                yield
        finally:
            self.train(was_training)

    def posterior_moments(self, x: torch.Tensor, batch_size: int = 500
                          ) -> tuple[torch.Tensor, torch.Tensor]:
        """The posterior's mean and log-variance for every image of ``x``, (N, z_dim) each,
        on the model's device: ``batch_size`` images at a time, in ``inference``, after
        ``check_inputs``."""
        if batch_size <= 0:
            raise ValueError(f"batch_size must be > 0, got {batch_size}")
        self.check_inputs(x)
        device = self.fc_mu.weight.device
        with self.inference():
            moments = [self.encode(x[i:i + batch_size].to(device))
                       for i in range(0, len(x), batch_size)]
        mu, logvar = zip(*moments, strict=True)
        return torch.cat(mu), torch.cat(logvar)

    def fit_prior(self, x: torch.Tensor) -> None:
        """Fit the prior, if it is fitted, to one posterior sample of each image of ``x``."""
        if not self.prior.needs_fit:
            return
        mu, logvar = self.posterior_moments(x)
        self.prior.fit(mu + (0.5 * logvar).exp() * torch.randn_like(mu))

    def check_inputs(self, x: torch.Tensor) -> None:
        """Raise ``ValueError`` for a batch this model cannot score: wrong shape, empty, NaN or
        inf, or (Bernoulli likelihood) values outside [0, 1]."""
        if tuple(x.shape[1:]) != self.input_shape:
            raise ValueError(f"VAE expects inputs of shape (N, {self.input_shape}), got "
                             f"{tuple(x.shape)}")
        if len(x) == 0:
            raise ValueError("VAE got an empty batch")
        lo, hi = (v.item() for v in torch.aminmax(x.detach()))
        if not (math.isfinite(lo) and math.isfinite(hi)):
            raise ValueError(f"VAE input holds NaN or inf (min {lo}, max {hi})")
        if self.config.likelihood == "bernoulli" and (lo < 0 or hi > 1):
            raise ValueError(
                f"Bernoulli (BCE) likelihood needs inputs in [0, 1], got values in [{lo:.4g}, "
                f"{hi:.4g}]; undo the input normalization or use likelihood='gaussian'")


class MLPVAE(BaseVAE):
    """Fully connected VAE, symmetric: D -> hidden... -> z -> ...hidden -> D."""

    def __init__(self, input_shape: tuple[int, ...], config: VAEConfig) -> None:
        super().__init__(input_shape, config)
        dim = math.prod(self.input_shape)
        widths = (dim, *config.hidden)
        enc: list[nn.Module] = [nn.Flatten()]
        for a, b in itertools.pairwise(widths):
            enc += [nn.Linear(a, b), nn.ReLU()]
        self.encoder = nn.Sequential(*enc)
        self.fc_mu = nn.Linear(widths[-1], config.z_dim)
        self.fc_logvar = nn.Linear(widths[-1], config.z_dim)
        dec_widths = (config.z_dim, *reversed(config.hidden))
        dec: list[nn.Module] = []
        for a, b in itertools.pairwise(dec_widths):
            dec += [nn.Linear(a, b), nn.ReLU()]
        dec.append(nn.Linear(dec_widths[-1], dim))
        self.decoder = nn.Sequential(*dec)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z).view(-1, *self.input_shape)


class ConvVAE(BaseVAE):
    """Convolutional VAE for (C, H, W) images; each stride-2 layer halves H and W."""

    def __init__(self, input_shape: tuple[int, ...], config: VAEConfig) -> None:
        super().__init__(input_shape, config)
        if len(self.input_shape) != 3:
            raise ValueError(f"ConvVAE needs (C, H, W) inputs, got shape {self.input_shape}")
        c, h, w = self.input_shape
        scale = 2 ** len(config.channels)
        if h % scale or w % scale:
            raise ValueError(f"ConvVAE with {len(config.channels)} layers needs H and W divisible "
                             f"by {scale}, got {h}x{w}")
        self._bottleneck = (config.channels[-1], h // scale, w // scale)
        chans = (c, *config.channels)
        enc: list[nn.Module] = []
        for a, b in itertools.pairwise(chans):
            enc += [nn.Conv2d(a, b, 4, stride=2, padding=1), nn.BatchNorm2d(b), nn.ReLU()]
        enc.append(nn.Flatten())
        self.encoder = nn.Sequential(*enc)
        flat = math.prod(self._bottleneck)
        self.fc_mu = nn.Linear(flat, config.z_dim)
        self.fc_logvar = nn.Linear(flat, config.z_dim)
        self.fc_dec = nn.Linear(config.z_dim, flat)
        dec: list[nn.Module] = []
        rev = tuple(reversed(chans))
        for i, (a, b) in enumerate(itertools.pairwise(rev)):
            dec.append(nn.ConvTranspose2d(a, b, 4, stride=2, padding=1))
            if i < len(rev) - 2:
                dec += [nn.BatchNorm2d(b), nn.ReLU()]
        self.decoder = nn.Sequential(*dec)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.fc_dec(z)).view(-1, *self._bottleneck)
        return self.decoder(h)


def build_vae(input_shape: tuple[int, ...], config: VAEConfig | None = None) -> BaseVAE:
    """Build the generator that ``config.arch`` names for inputs of ``input_shape``."""
    config = config or VAEConfig()
    cls = MLPVAE if config.arch == "mlp" else ConvVAE
    return cls(input_shape, config)
