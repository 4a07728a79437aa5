"""Generator diagnostics: plain functions of a trained ``BaseVAE`` and a data tensor.

Models live apart from their metrics (as in disentanglement_lib), so any caller (tests, the
representation benchmark, the continual-learning driver) scores a generator the same way. Every
function takes images as a float tensor shaped (N, *vae.input_shape), in [0, 1] for the
Bernoulli likelihood, runs the model in eval mode without gradients, in batches so a whole test
set fits in memory, restores the model's mode afterwards and returns CPU tensors or numbers.

Under the binarized KL (r > 0) a dimension's KL_r is its distance to the *nearer* mode, so a
"collapsed" dimension (KL_r ~ 0) may still carry one bit through the sign of its mean: read
``collapsed_dimensions`` together with ``active_units`` and ``sign_balance``. These KL
diagnostics measure KL_r whatever the prior; only the likelihood bound uses the prior.
"""

from __future__ import annotations

import collections
import math
from collections.abc import Iterable, Iterator

import torch

from cl_binvae.model.likelihood import estimate
from cl_binvae.model.regularizer import binarized_kl
from cl_binvae.model.vae import BaseVAE

BATCH_SIZE = 500


def posterior_moments(vae: BaseVAE, x: torch.Tensor,
                      batch_size: int = BATCH_SIZE) -> tuple[torch.Tensor, torch.Tensor]:
    """The posterior's mean and log-variance for every image: two tensors of shape (N, z_dim)."""
    if len(x) == 0:
        raise ValueError("diagnostics need at least one image, got an empty tensor")
    mu, logvar = vae.posterior_moments(x, batch_size)
    return mu.cpu(), logvar.cpu()


def reconstruction_error(vae: BaseVAE, x: torch.Tensor,
                         batch_size: int = BATCH_SIZE) -> torch.Tensor:
    """-log p(x | z = mu) per image in nats, shape (N,): the decoder fed the posterior mean."""
    with vae.inference():
        return torch.cat([_reconstruction(vae, xb, mu)
                          for xb, mu, _ in _encoded(vae, x, batch_size)]).cpu()


def kl_per_dimension(vae: BaseVAE, x: torch.Tensor, batch_size: int = BATCH_SIZE) -> torch.Tensor:
    """KL_r of each latent dimension, averaged over the data: shape (z_dim,), in nats."""
    return _mean_kl(*posterior_moments(vae, x, batch_size), vae.config.r)


def active_units(vae: BaseVAE, x: torch.Tensor, threshold: float = 0.01,
                 batch_size: int = BATCH_SIZE) -> int:
    """Dimensions whose posterior mean varies across the data: Var_x(mu_j) > ``threshold``.

    Burda et al. 2016's activity statistic Cov_x(E_q[z_j]).
    """
    return _count_active(posterior_moments(vae, x, batch_size)[0], threshold)


def collapsed_dimensions(vae: BaseVAE, x: torch.Tensor, threshold: float = 0.01,
                         batch_size: int = BATCH_SIZE) -> int:
    """Dimensions whose mean KL_r is below ``threshold`` nats, i.e. that sit on a prior mode."""
    return int((kl_per_dimension(vae, x, batch_size) < threshold).sum())


def sign_balance(vae: BaseVAE, x: torch.Tensor, batch_size: int = BATCH_SIZE) -> torch.Tensor:
    """Share of images with a positive posterior mean, per dimension: shape (z_dim,).

    0.5 is a balanced binary concept; 0 or 1 means the dimension's sign never changes.
    """
    return _positive_share(posterior_moments(vae, x, batch_size)[0])


def iw_log_likelihood(vae: BaseVAE, x: torch.Tensor, k: int = 100,
                      batch_size: int = BATCH_SIZE,
                      rng: torch.Generator | None = None) -> torch.Tensor:
    """Importance-weighted lower bound on log p(x) per image (Burda et al. 2016), shape (N,).

    log p(x) >= log (1/k) sum_i p(x | z_i) p(z_i) / q(z_i | x) with z_i ~ q(z | x). p(z) is
    the marginal of the prior the model samples from (``vae.prior.log_prob``: for the default,
    the mixture 0.5 N(r, 1) + 0.5 N(-r, 1), not the nearer mode that KL_r uses), so models
    trained with different r or priors are scored under their true generative model.
    The bound tightens as ``k`` grows; k = 1 is a one-sample ELBO.
    """
    if k < 1:
        raise ValueError(f"the number of importance samples k must be >= 1, got {k}")
    with vae.inference():
        return torch.cat([estimate(vae, xb, mu, logvar, k, rng)[0]
                          for xb, mu, logvar in _encoded(vae, x, batch_size)]).cpu()


def diagnose(vae: BaseVAE, x: torch.Tensor, k: int = 50, threshold: float = 0.01,
              batch_size: int = BATCH_SIZE,
              rng: torch.Generator | None = None) -> dict[str, float]:
    """All the diagnostics above in one encoder pass, as means over the data.

    Keys: ``recon`` (nats per image), ``kl`` (KL_r summed over dimensions), ``active_units``,
    ``collapsed``, ``sign_imbalance`` (mean over dimensions of |sign_balance - 0.5|) and
    ``iw_ll`` (the k-sample bound).
    """
    mus, logvars, recons, bounds = [], [], [], []
    with vae.inference():
        for xb, mu, logvar in _encoded(vae, x, batch_size):
            mus.append(mu)
            logvars.append(logvar)
            recons.append(_reconstruction(vae, xb, mu))
            bounds.append(estimate(vae, xb, mu, logvar, k, rng)[0])
    mu, logvar = torch.cat(mus).cpu(), torch.cat(logvars).cpu()
    kl = _mean_kl(mu, logvar, vae.config.r)
    return {
        "recon": torch.cat(recons).mean().item(),
        "kl": kl.sum().item(),
        "active_units": _count_active(mu, threshold),
        "collapsed": int((kl < threshold).sum()),
        "sign_imbalance": (_positive_share(mu) - 0.5).abs().mean().item(),
        "iw_ll": torch.cat(bounds).mean().item(),
    }


def replay_class_balance(tasks: torch.Tensor, labels: torch.Tensor,
                         seen: Iterable[tuple[int, int]]) -> dict[str, float]:
    """How replay spreads over the classes seen so far, from the (task, label) of each sample.

    Keys: ``share_t<task>_c<class>`` for every seen pair (0 when never replayed), in the order
    given, and ``balance``, the entropy of those shares over its maximum log(#seen): 1 when
    replay is uniform over the seen classes, 0 when it is a single class.
    """
    seen = list(seen)
    if not seen:
        raise ValueError("replay_class_balance needs at least one seen class")
    if len(tasks) != len(labels) or len(labels) == 0:
        raise ValueError(f"need one task per label and at least one sample, got "
                         f"{len(tasks)} tasks and {len(labels)} labels")
    pairs = collections.Counter(zip(tasks.tolist(), labels.tolist()))
    shares = torch.tensor([pairs[key] for key in seen], dtype=torch.float64) / len(labels)
    nonzero = shares[shares > 0]
    entropy = float(-(nonzero * nonzero.log()).sum()) + 0.0  # + 0.0: no "-0.0" in the CSV
    balance = entropy / math.log(len(seen)) if len(seen) > 1 else 1.0
    return {**{f"share_t{t}_c{c}": float(v) for (t, c), v in zip(seen, shares)},
            "balance": balance}


# -- shared steps ------------------------------------------------------------------------------
def _encoded(vae: BaseVAE, x: torch.Tensor,
             batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Yield (images, mu, logvar) batch by batch, on the model's device, after checking ``x``."""
    if len(x) == 0:
        raise ValueError("diagnostics need at least one image, got an empty tensor")
    if batch_size <= 0:
        raise ValueError(f"batch_size must be > 0, got {batch_size}")
    # The model's own check: shape, NaN/inf and the likelihood's value range, with its messages.
    vae.check_inputs(x)
    device = vae.fc_mu.weight.device
    for start in range(0, len(x), batch_size):
        xb = x[start:start + batch_size].to(device)
        yield (xb, *vae.encode(xb))


def _reconstruction(vae: BaseVAE, x: torch.Tensor, mu: torch.Tensor) -> torch.Tensor:
    return vae.reconstruction_nll(x, vae.decode(mu))


def _mean_kl(mu: torch.Tensor, logvar: torch.Tensor, r: float) -> torch.Tensor:
    return binarized_kl(mu, logvar, r).mean(0)


def _count_active(mu: torch.Tensor, threshold: float) -> int:
    # correction=0: a single image has zero spread, not an undefined one.
    return int((mu.var(0, correction=0) > threshold).sum())


def _positive_share(mu: torch.Tensor) -> torch.Tensor:
    return (mu > 0).float().mean(0)
