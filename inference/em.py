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

import copy
import math
import time
from dataclasses import dataclass, field

import pandas as pd
import torch
from tqdm.auto import tqdm

from ..models.components import best_of_restarts, selection_rows
from .data import as_observations

DEFAULT_TOL = 1e-6
DEFAULT_MAX_ITER = 1000
#: the short EM runs that choose among several starts: at most SHORT_RUN_ITERATIONS iterations, or
#: until the change per observation is below SHORT_RUN_TOL (scikit-learn's default tol), on at most
#: SHORT_RUN_ROWS observations (rows, or time steps of sequences)
SHORT_RUN_ITERATIONS, SHORT_RUN_TOL, SHORT_RUN_ROWS = 20, 1e-3, 5000


@dataclass
class EMResult:
    """What :func:`fit_em` returns.

    ``history`` has one row per iteration of the full run: ``epoch``, ``elbo`` (the
    log-likelihood per observation before that iteration's update: the exact ELBO, the E-step
    being the exact posterior) and ``seconds`` (cumulative, from the fit's start, short runs
    included); ``converged`` says whether the change fell below ``tol`` before ``max_iter``
    iterations; ``epochs_run`` counts them. ``short_run_ends`` has the last log-likelihood per
    observation of the short run from each start (empty with one start); ``seconds`` includes
    them.
    """

    model: torch.nn.Module
    history: pd.DataFrame
    converged: bool
    epochs_run: int
    seconds: float
    short_run_ends: list[float] = field(default_factory=list)


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

    A model with several starts (``model.starts(x, mask)``: the k-means++ restarts of the mixtures
    and the HMM) is started where short EM runs end best: from each start at most
    ``SHORT_RUN_ITERATIONS`` iterations (or until the change is below ``SHORT_RUN_TOL``) on at
    most ``SHORT_RUN_ROWS`` observations, the "small EM" start of Biernacki, Celeux and Govaert (2003).
    The likelihood has several optima and the best start is not always the start of the best
    end; a short run tells the basins apart at a fraction of a full run's cost.

    Args:
        model: a model with ``em_step`` (or a ``Marginalized`` wrapper of one).
        x: array-like (N, ...) in the model's dtype and device after conversion; ``mask`` as for
            :func:`~dlvm.inference.fit` (FA, PPCA and the mixtures take missing values, ignorable
            missingness; the other models refuse them in one line).
        initialize: start from the data (``model.starts`` or ``model.initialize``); False
            continues from the model's present parameters.
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
    several = initialize and getattr(base, "restarts", 1) > 1 and hasattr(base, "starts") \
        and not getattr(base, "bayesian", False)
    if several:
        ends = _best_short_run(base, x, mask)
    elif initialize and hasattr(base, "initialize"):
        base.initialize(x, mask)
    history, converged = _iterate(base, x, mask, _observations(base, x, mask), tol, max_iter, progress, began)
    if several:
        base.initialized(x, mask)
    return EMResult(model=model, history=pd.DataFrame(history, columns=["epoch", "elbo", "seconds"]),
                    converged=converged, epochs_run=len(history), seconds=time.perf_counter() - began,
                    short_run_ends=ends if several else [])


def _best_short_run(base, x, mask) -> list[float]:
    """Run short EM from each of ``base.starts(x, mask)`` on :func:`selection_rows` and leave the
    model where the best ended (:func:`best_of_restarts` scoring each start by its short run);
    returns each run's last log-likelihood per observation."""
    rows, rows_mask = selection_rows(x, mask, SHORT_RUN_ROWS)
    count = _observations(base, rows, rows_mask)
    ends = []

    def short_run(_rows) -> float:
        history, _ = _iterate(base, rows, rows_mask, count, SHORT_RUN_TOL, SHORT_RUN_ITERATIONS, False, 0.0)
        ends.append(history[-1]["elbo"])
        return ends[-1]

    best_of_restarts(base, rows, rows_mask, base.starts(x, mask), short_run)
    return ends


def _iterate(base, x, mask, count: float, tol: float, max_iter: int, progress: bool, began: float):
    """EM iterations from the model's present parameters: (history rows, converged)."""
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
    return history, converged
