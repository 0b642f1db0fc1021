"""Latent features of a fitted model (§6.7): posterior means and standard deviations of z per row.

In order of preference: the exact posterior where the model has ``posterior`` (a Gaussian for
FA/PPCA; responsibilities for mixtures, whose one-hot z has mean p and sd sqrt(p (1 - p))); the
amortized guide's q(z | x) moments; Monte-Carlo moments of draws of the guide's ``z`` site.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyro.distributions as dist
import pyro.poutine as poutine
import torch

from ..models.base import declares, placement

from .data import as_observations


@dataclass
class Encoding:
    """Posterior ``mean`` and ``sd`` of z per row, both (B, K), and the ``method`` that gave them."""

    mean: np.ndarray
    sd: np.ndarray
    method: str


def _one_hot_moments(probs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and sd of a one-hot z with probabilities ``probs`` (B, K)."""
    return probs, (probs * (1 - probs)).clamp(min=0).sqrt()


def _moments(posterior) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, sd), each (B, K), of a batch of distributions or of probabilities (B, K)."""
    if isinstance(posterior, dist.Distribution):
        return posterior.mean, posterior.variance.sqrt()
    if posterior.ndim != 2:
        raise ValueError(f"the model's posterior has shape {tuple(posterior.shape)}, one per time step "
                         "rather than per row: it does not encode rows (for an HMM use dlvm regimes)")
    return _one_hot_moments(posterior)


def _exact(model, guide, x, mask):
    # a Bayesian model's globals are taken from one draw of the guide, as in evaluate
    trace = poutine.trace(guide).get_trace(x, mask)
    return _moments(poutine.replay(model.posterior, trace=trace)(x, mask))


def _monte_carlo(guide, x, mask, num_samples: int):
    draws = []
    for _ in range(num_samples):
        site = poutine.trace(guide).get_trace(x, mask).nodes.get("z")
        if site is None or site["type"] != "sample" or not site["value"].is_floating_point():
            raise ValueError("the guide draws no continuous latent z per row to encode with")
        draws.append(site["value"].reshape(x.shape[0], -1))
    draws = torch.stack(draws)
    return draws.mean(0), draws.std(0) if num_samples > 1 else torch.zeros_like(draws[0])


@torch.no_grad()
def encode(model, guide, x, mask=None, num_samples: int = 100) -> Encoding:
    """Posterior means and sds of z for rows ``x`` (B, ...) -> :class:`Encoding` ((B, K) each).

    Exact posterior, else the amortized guide's q(z | x) (its ``distribution``, or the
    probabilities of a categorical guide), else ``num_samples`` draws of the guide's z.
    """
    device, dtype = placement(model)
    x, mask = as_observations(x, mask, dtype=dtype, device=device)
    local = getattr(guide, "local_guide", None) or guide
    with poutine.block():
        if declares(model, "exact_posterior"):
            mean, sd, method = *_exact(model, guide, x, mask), "exact posterior"
        elif hasattr(local, "distribution"):
            mean, sd, method = *_moments(local.distribution(x, mask)), "amortized q(z|x)"
        elif getattr(model, "latent_kind", None) == "categorical" and hasattr(local, "logits"):
            mean, sd, method = *_one_hot_moments(local.logits(x, mask).softmax(-1)), "amortized q(z|x)"
        else:
            if num_samples < 1:
                raise ValueError(f"the number of draws must be at least 1, got {num_samples}")
            mean, sd = _monte_carlo(guide, x, mask, num_samples)
            method = f"Monte Carlo ({num_samples} draws of q(z|x))"
    return Encoding(mean.double().cpu().numpy(), sd.double().cpu().numpy(), method)
