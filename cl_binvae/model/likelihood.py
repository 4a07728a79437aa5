"""Importance-sampled log-likelihood of images under a VAE (Burda et al. 2016):

    log p(x) ~ log (1/S) sum_s p(x | z_s) p(z_s) / q(z_s | x),   z_s ~ q(z | x),

with p(z) the marginal of the prior the model samples from (``vae.prior.log_prob``). The
estimate is biased low and tightens as S grows; computed in log space throughout.

Samples are drawn in chunks of at most ``max_decodes`` decoded images and folded into a
running log-sum-exp, so memory does not grow with S; a chunk is decoded a slice at a time
(``DECODE_ELEMENTS``), which leaves its draws, and the estimate, as they are. The estimates
for several S come from one pass (``samples=(10, 100, 1000)``): the estimate at S is the one
from each image's first S draws. Later batches of images draw after the earlier ones, so
past the first batch those are not the draws a pass with fewer samples would make: the same
distribution, other numbers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from cl_binvae.model.regularizer import LOG_2PI
from cl_binvae.model.vae import BaseVAE

#: Decoded images held at once by default: caps an estimate's memory at about this many
#: outputs, whatever S and the number of images are.
MAX_DECODES = 2_048
#: Decoder outputs (numbers) computed at once within a chunk. Larger transient tensors than
#: glibc's mmap threshold (at most 32 MiB) are mapped afresh on every call and faulted in page
#: by page; with two runs on two cores that took 45% of the conv VAE's scoring time.
DECODE_ELEMENTS = 1 << 21


def log_weights(vae: BaseVAE, x: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor,
                eps: torch.Tensor) -> torch.Tensor:
    """log p(x|z) + log p(z) - log q(z|x) at z = mu + sigma eps: shape (m, N) for ``eps`` of
    shape (m, N, z_dim), images ``x`` of shape (N, ...) and their posterior (mu, logvar)."""
    z = mu + (0.5 * logvar).exp() * eps
    outputs = vae.decode(z.flatten(0, 1)).view(*eps.shape[:2], *x.shape[1:])
    # log N(z; mu, sigma^2) written through eps, which avoids dividing by a tiny sigma.
    log_q = (-0.5 * eps.pow(2) - 0.5 * logvar - 0.5 * LOG_2PI).sum(-1)
    return -vae.reconstruction_nll(x, outputs) + vae.prior.log_prob(z) - log_q


def check_samples(samples: int | Sequence[int]) -> tuple[int, ...]:
    """``samples`` as an increasing tuple of S >= 1; ``ValueError`` otherwise."""
    counts = (samples,) if isinstance(samples, int) else tuple(samples)
    if not counts or any(isinstance(s, bool) or not isinstance(s, int) or s < 1
                         for s in counts):
        raise ValueError(f"importance samples S must be integers >= 1, got {samples!r}")
    if list(counts) != sorted(set(counts)):
        raise ValueError(f"importance samples must increase, got {samples!r}")
    return counts


def estimate(vae: BaseVAE, x: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor,
             samples: int | Sequence[int], rng: torch.Generator | None = None,
             max_decodes: int = MAX_DECODES) -> torch.Tensor:
    """The estimate for images ``x`` whose posterior is (mu, logvar), at each S of
    ``samples``: shape (len(samples), N). Call it without gradients, in eval mode."""
    counts = check_samples(samples)
    chunk = max(1, max_decodes // len(x))
    rows = max(1, DECODE_ELEMENTS // x.numel())  # draws decoded at once
    total = torch.full((len(x),), -math.inf, device=mu.device)
    out = []
    drawn = 0
    for target in counts:
        while drawn < target:
            m = min(chunk, target - drawn)
            eps = torch.randn((m, *mu.shape), device=mu.device, generator=rng)
            weights = torch.cat([log_weights(vae, x, mu, logvar, part)
                                 for part in eps.split(rows)])
            total = torch.logaddexp(total, torch.logsumexp(weights, 0))
            drawn += m
        out.append(total - math.log(target))
    return torch.stack(out)


def log_likelihood(vae: BaseVAE, x: torch.Tensor, samples: int | Sequence[int],
                   batch_size: int = 500, rng: torch.Generator | None = None,
                   max_decodes: int = MAX_DECODES) -> torch.Tensor:
    """The estimate of log p(x) for every image of ``x`` at each S of ``samples``: shape
    (len(samples), N), on the CPU. Images go ``batch_size`` at a time through the model,
    in ``vae.inference()``, after ``vae.check_inputs``."""
    check_samples(samples)
    if len(x) == 0:
        raise ValueError("the log-likelihood needs at least one image, got an empty tensor")
    vae.check_inputs(x)
    device = vae.fc_mu.weight.device
    parts = []
    with vae.inference():
        for start in range(0, len(x), batch_size):
            xb = x[start:start + batch_size].to(device)
            mu, logvar = vae.encode(xb)
            parts.append(estimate(vae, xb, mu, logvar, samples, rng, max_decodes).cpu())
    return torch.cat(parts, 1)
