"""The binarized KL regularizer and its prior (Hu & Rostami 2023, arXiv 2303.12255).

For a diagonal Gaussian posterior N(mu, sigma^2) and a radius r >= 0,

    KL_r = 0.5 * sum_j [ (|mu_j| - r)^2 + sigma_j^2 - log sigma_j^2 - 1 ]
         = sum_j KL( N(mu_j, sigma_j^2) || N(sign(mu_j) r, 1) ).

Each latent dimension is pulled towards the nearer of the two modes +-r, so its sign is a free
binary "concept" and the collapsed state mu_j = 0 costs r^2 / 2. r = 0 is the ordinary VAE KL.
The matching generative prior is the mixture 0.5 N(r, 1) + 0.5 N(-r, 1) per dimension.
"""

from __future__ import annotations

import math

import torch

from cl_binvae.model.config import check_radius

__all__ = ["LOG_2PI", "binarized_kl", "binarized_prior_log_prob", "check_radius", "kl_r", "mixture_log_prob",
           "sample_binarized_prior", "sample_mixture"]

#: log(2 pi): a Gaussian log-density's constant, one per dimension.
LOG_2PI = math.log(2 * math.pi)

# Each public function checks r and hands it to its formula (kl_r, sample_mixture,
# mixture_log_prob), which the priors call directly: a prior checks its r once, when it is
# built, not at every minibatch.


def binarized_kl(mu: torch.Tensor, logvar: torch.Tensor, r: float) -> torch.Tensor:
    """KL_r per latent dimension, shape of ``mu``; sum over the last axis for a per-sample KL.
    ``ValueError`` for a radius that ``check_radius`` refuses.

    PyTorch takes the subgradient of ``|mu|`` at 0 to be 0: a dimension sitting exactly at 0
    gets no push from the KL towards either mode, only from the likelihood, which breaks the tie.
    """
    return kl_r(mu, logvar, check_radius(r))


def kl_r(mu: torch.Tensor, logvar: torch.Tensor, r: float) -> torch.Tensor:
    """``binarized_kl`` for an ``r`` that ``check_radius`` returned."""
    dist = mu.abs() - r if r > 0 else mu
    return 0.5 * (dist.pow(2) + logvar.exp() - logvar - 1.0)


def sample_binarized_prior(
    n: int,
    z_dim: int,
    r: float,
    *,
    device: torch.device | str | None = None,
    rng: torch.Generator | None = None,
) -> torch.Tensor:
    """Draw ``n`` latents from 0.5 N(r, 1) + 0.5 N(-r, 1), independently per dimension.

    Sampled as z = s * r + eps with fair signs s in {-1, +1} and eps ~ N(0, I).
    ``ValueError`` for a radius that ``check_radius`` refuses.
    """
    return sample_mixture(n, z_dim, check_radius(r), device=device, rng=rng)


def sample_mixture(
    n: int,
    z_dim: int,
    r: float,
    *,
    device: torch.device | str | None = None,
    rng: torch.Generator | None = None,
) -> torch.Tensor:
    """``sample_binarized_prior`` for an ``r`` that ``check_radius`` returned."""
    eps = torch.randn(n, z_dim, device=device, generator=rng)
    if r == 0:
        return eps
    signs = torch.randint(0, 2, (n, z_dim), device=device, generator=rng) * 2 - 1
    return eps + r * signs.to(eps.dtype)


def binarized_prior_log_prob(z: torch.Tensor, r: float) -> torch.Tensor:
    """Log-density of ``z`` under the mixture prior, summed over the last axis.

    Used by the importance-weighted likelihood bound, so models trained with different r are
    compared under the prior they actually sample from. ``ValueError`` for a radius that
    ``check_radius`` refuses.
    """
    return mixture_log_prob(z, check_radius(r))


def mixture_log_prob(z: torch.Tensor, r: float) -> torch.Tensor:
    """``binarized_prior_log_prob`` for an ``r`` that ``check_radius`` returned."""
    log_norm = -0.5 * LOG_2PI
    if r == 0:
        return (log_norm - 0.5 * z.pow(2)).sum(-1)
    plus = -0.5 * (z - r).pow(2)
    minus = -0.5 * (z + r).pow(2)
    return (log_norm - math.log(2.0) + torch.logaddexp(plus, minus)).sum(-1)
