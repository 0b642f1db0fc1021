"""Closed-form expectation-maximisation for the classical models: ``fit_em(model, x)``.

For a model whose exact posterior p(z | x) is available (FA, PPCA, Gaussian mixtures, mixtures of
PPCA, Gaussian HMMs), the E-step sets q(z | x) = p(z | x), which makes the ELBO equal to the
log-likelihood, and the M-step maximises the ELBO over the globals in closed form. Each
iteration is ``model.em_step(x, mask) -> float``: one E-step and one M-step in place, returning
the total log-likelihood of the data before the update. The log-likelihood never decreases, and
the loop stops when it changes by less than ``tol`` nats per observation (row, or time step of a
sequence) between iterations. The change per iteration does not depend on the data's units
(rescaling x shifts log p(x) by a constant), so the same ``tol`` means the same accuracy at any
scale.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import pandas as pd
import torch
from tqdm.auto import tqdm

from .data import as_observations

DEFAULT_TOL = 1e-6
DEFAULT_MAX_ITER = 1000


@dataclass
class EMResult:
    """What :func:`fit_em` returns.

    ``history`` has one row per iteration: ``epoch``, ``elbo`` (the log-likelihood per
    observation before that iteration's update: the exact ELBO, the E-step being the exact
    posterior) and ``seconds`` (cumulative); ``converged`` says whether the change fell below
    ``tol`` before ``max_iter`` iterations; ``epochs_run`` counts the iterations.
    """

    model: torch.nn.Module
    history: pd.DataFrame
    converged: bool
    epochs_run: int
    seconds: float


def supports_em(model) -> bool:
    """Whether ``model`` (or the model a :class:`~dlvm.models.base.Marginalized` wraps) has a
    closed-form EM step."""
    return hasattr(getattr(model, "base", model), "em_step")


def _observations(model, x, mask) -> float:
    with torch.no_grad():
        return float(model.observations_per_row(x, mask).sum())


def fit_em(model, x, mask=None, *, tol: float = DEFAULT_TOL, max_iter: int = DEFAULT_MAX_ITER,
           initialize: bool = True, progress: bool = False) -> EMResult:
    """Fit ``model`` to x by closed-form EM until the log-likelihood per observation changes by
    less than ``tol`` between iterations (at most ``max_iter`` iterations).

    Args:
        model: a model with ``em_step`` (or a ``Marginalized`` wrapper of one).
        x: array-like (N, ...) in the model's dtype and device after conversion; ``mask`` as for
            :func:`~dlvm.inference.fit` (FA, PPCA and the mixtures take missing values, ignorable
            missingness; the other models refuse them in one line).
        initialize: call ``model.initialize(x, mask)`` first (the data-dependent start).
    """
    base = getattr(model, "base", model)
    if not hasattr(base, "em_step"):
        raise ValueError(f"{type(base).__name__} has no closed-form EM step; use --optimizer adam or lbfgs")
    if not tol >= 0:
        raise ValueError(f"tol must be a nonnegative number, got {tol}")
    if max_iter < 1:
        raise ValueError(f"the number of EM iterations must be at least 1, got {max_iter}")
    x, mask = as_observations(x, mask, dtype=base.dtype, device=base.device)
    began = time.perf_counter()
    if initialize and hasattr(base, "initialize"):
        base.initialize(x, mask)
    count = _observations(base, x, mask)
    history, converged, previous = [], False, -math.inf
    bar = tqdm(range(1, max_iter + 1), desc="em", disable=not progress, leave=False)
    for epoch in bar:
        value = base.em_step(x, mask) / count
        if not math.isfinite(value):
            raise ValueError(f"the log-likelihood became {value} at EM iteration {epoch}")
        history.append({"epoch": epoch, "elbo": value, "seconds": time.perf_counter() - began})
        bar.set_postfix(loglik=f"{value:.6g}")
        if abs(value - previous) < tol:
            converged = True
            break
        previous = value
    bar.close()
    seconds = time.perf_counter() - began
    return EMResult(model=model, history=pd.DataFrame(history, columns=["epoch", "elbo", "seconds"]),
                    converged=converged, epochs_run=len(history), seconds=seconds)
