"""Anomaly scores of a fitted model (§6.7): the negative log-likelihood of each row.

Exact where the model has ``log_marginal`` (FA, PPCA, mixtures; an HMM scores each time step
by its one-step-ahead -log p(x_t | x_{1:t-1})); otherwise the IWAE-K
estimate -log (1/K sum_k w_k) with w_k = p(x, z_k) / q(z_k | x), z_k ~ q(z | x), and its Monte-Carlo
standard error by the delta method: Var[log mean w] ~ Var[w] / (K mean(w)^2). A score is placed
against reference rows (the training data) by its percentile, the empirical CDF of their scores.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ..models.base import declares, placement

from .data import as_observations
from .evaluate import evaluate, log_weights
from .streaming import chunks


@dataclass
class AnomalyScores:
    """Per-row negative log-likelihood ``nll`` (B,) in nats, its standard error ``se`` (B,) (0 when
    exact, NaN for IWAE-1) and how it was computed: ``method`` "exact", "one-step" (exact, per time
    step) or "iwae", ``num_samples`` K."""

    nll: np.ndarray
    se: np.ndarray
    method: str
    num_samples: int

    @property
    def label(self) -> str:
        """``exact``, ``exact one-step`` or ``IWAE-K``."""
        return {"exact": "exact", "one-step": "exact one-step"}.get(self.method, f"IWAE-{self.num_samples}")

    @property
    def description(self) -> str:
        """What the scores are, in words (K stated for IWAE)."""
        if self.method == "exact":
            return "exact negative log-likelihood"
        if self.method == "one-step":
            return "exact one-step-ahead negative log-likelihood -log p(x_t | x_<t) per time step"
        return (f"negative IWAE-{self.num_samples} bound (K = {self.num_samples} importance samples) "
                "with its standard error")


def log_mean_exp_se(log_w: torch.Tensor) -> torch.Tensor:
    """Delta-method standard error of log((1/K) sum_k exp(log_w_k)) over dim 0: (K, B) -> (B,).

    SE = sd(w) / (sqrt(K) mean(w)), computed on w / max(w) (the ratio does not change); NaN for K = 1.
    """
    k = log_w.shape[0]
    if k < 2:
        return torch.full(log_w.shape[1:], math.nan, dtype=log_w.dtype)
    w = (log_w - log_w.amax(0)).exp()
    return w.std(0) / (math.sqrt(k) * w.mean(0))


@torch.no_grad()
def iwae_scores(model, guide, x, mask=None, num_samples: int = 100, batch_size: int = 256) -> AnomalyScores:
    """-IWAE-K per row and its delta-method SE, from K draws of :func:`log_weights` per row."""
    device, dtype = placement(model)
    x, mask = as_observations(x, mask, dtype=dtype, device=device)
    nll, se = [], []
    for xb, mb in chunks(x, mask, batch_size):
        log_w = torch.stack([log_weights(model, guide, xb, mb) for _ in range(num_samples)]).double()
        nll.append(math.log(num_samples) - torch.logsumexp(log_w, 0))
        se.append(log_mean_exp_se(log_w))
    return AnomalyScores(torch.cat(nll).cpu().numpy(), torch.cat(se).cpu().numpy(), "iwae", num_samples)


@torch.no_grad()
def step_scores(model, x, mask=None) -> AnomalyScores:
    """-log p(x_t | x_{1:t-1}) of every time step of sequences x (N, T, D), flattened to (N T,)."""
    device, dtype = placement(model)
    x, mask = as_observations(x, mask, dtype=dtype, device=device)
    nll = -model.step_log_likelihood(x, mask).reshape(-1).double().cpu().numpy()
    return AnomalyScores(nll, np.zeros_like(nll), "one-step", 0)


def anomaly_scores(model, guide, x, mask=None, num_samples: int = 100, batch_size: int = 256) -> AnomalyScores:
    """Negative log-likelihood per row of ``x`` (B, ...): exact by :func:`evaluate` where the model
    has ``log_marginal``, else IWAE-``num_samples`` with its standard error. A sequence model with
    ``step_log_likelihood`` (the HMM) scores every time step instead: -log p(x_t | x_{1:t-1}) (B T,)."""
    if num_samples < 1:
        raise ValueError(f"the number of importance samples must be at least 1, got {num_samples}")
    if hasattr(model, "step_log_likelihood"):
        return step_scores(model, x, mask)
    if not declares(model, "exact_marginal"):
        return iwae_scores(model, guide, x, mask, num_samples, batch_size)
    exact = evaluate(model, guide, x, mask, num_samples=1, batch_size=batch_size).log_likelihood
    nll = -exact.double().numpy()
    return AnomalyScores(nll, np.zeros_like(nll), "exact", 0)


def percentiles(scores, reference) -> np.ndarray:
    """Percentile of each score among the reference scores: 100 x the fraction of reference
    scores <= it (the empirical CDF), shape of ``scores``."""
    reference = np.sort(np.asarray(reference, dtype=float).ravel())
    if reference.size == 0:
        raise ValueError("no reference scores to place the scores against")
    return 100.0 * np.searchsorted(reference, np.asarray(scores, dtype=float), side="right") / reference.size
