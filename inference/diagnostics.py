"""Posterior diagnostics: ArviZ data from an SVI fit or from MCMC, and PSIS k-hat of a guide.

:func:`to_arviz` converts the posterior of any Pyro model, fitted by any guide or sampled by
``pyro.infer.MCMC`` (or :func:`run_nuts`), for ArviZ through :mod:`dlvm.inference.arviz_adapter`
(the only module that imports arviz); :mod:`dlvm.inference.arviz_groups` reads the sites. Groups:

* ``posterior``: every latent and ``pyro.deterministic`` site, dims named after its plates;
  latents in the ``"data"`` plate (per-row locals) only for the rows ``local_rows`` (dim
  ``z_row``). Guide draws are independent, stored as 1 chain x S draws;
* ``log_likelihood``: the log-density of each observed site per batch element and draw, so that
  ``loo`` works; for a dlvm model given ``data`` with an exact ``log_marginal``, log p(x_i | globals)
  with the local latent integrated out;
* ``observed_data`` and ``posterior_predictive`` (:class:`pyro.infer.Predictive` on the model with
  its observations unconditioned);
* for MCMC, ``sample_stats`` (``diverging``).

:func:`psis_khat` is the Pareto k of each row's importance weights log p(x_i, z) - log q(z | x_i)
(Yao et al. 2018): above :func:`~dlvm.inference.arviz_adapter.khat_threshold` of the number of
draws (0.7 at most) the guide is a poor importance sampler for that row.
"""
from __future__ import annotations

import math
import time
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import pyro
import pyro.poutine as poutine
import torch
from pyro.infer import MCMC, NUTS
from pyro.ops.stats import fit_generalized_pareto

from ..models.base import call_in_context, declares, init_to_model_start
from ..models.sites import deterministic_sites, observed_sites

from . import arviz_adapter
from .arviz_groups import (
    ROWS_PLATE, Draws, as_numpy, conditioned_trace, log_likelihood_of_draw,
    mcmc_draws, observed_value, over_draws, posterior_predictive, rows_plate_dim,
    sample_guide, short_names, site_dims,
)
from .estimators import model_observations
from .evaluate import log_weights

#: the observed site of dlvm's models
OBSERVED = "x"
#: the posterior dim of the chosen rows of per-row latents
LOCAL_ROWS_DIM = "z_row"


def guide_draws(guide, x, mask=None, num_draws: int = 500) -> dict[str, torch.Tensor]:
    """``num_draws`` independent draws of every latent site of a dlvm guide on rows ``x``:
    {site: (S, ...)} in the data's dtype."""
    return sample_guide(guide, num_draws, (x, mask), dtype=x.dtype).values


@dataclass
class NutsResult:
    """NUTS draws of the latent sites, {site: (chains, draws, ...)}, and divergences (chains, draws)."""

    samples: dict[str, torch.Tensor]
    diverging: torch.Tensor
    seconds: float


def run_nuts(model, data, mask=None, *, num_samples: int = 300, warmup: int = 300, chains: int = 2,
             initialize: bool = True, seed: int = 0, target_accept: float = 0.8) -> NutsResult:
    """NUTS on every latent site of ``model`` (chains run one after another, in this process).

    For models with local latents pass the collapsed model (:class:`~dlvm.models.base.Marginalized`)
    so that NUTS explores only the globals. Chains start from the model's data-dependent start
    (``initialize``, ``initial_globals``) where it has one, else from the prior median.
    """
    if num_samples < 1 or warmup < 0 or chains < 1:
        raise ValueError(f"need num_samples >= 1, warmup >= 0, chains >= 1; got {num_samples}, {warmup}, {chains}")
    x, mask = model_observations(model, data, mask)
    if initialize and hasattr(model, "initialize"):
        model.initialize(x, mask)
    samples, diverging, seconds = {}, [], 0.0
    for chain in range(chains):
        pyro.set_rng_seed(seed + chain)
        kernel = NUTS(model, init_strategy=init_to_model_start(model), target_accept_prob=target_accept,
                      max_plate_nesting=getattr(model, "max_plate_nesting", 1))
        mcmc = MCMC(kernel, num_samples=num_samples, warmup_steps=warmup, disable_progbar=True)
        began = time.perf_counter()
        mcmc.run(x, mask)
        seconds += time.perf_counter() - began
        draws = mcmc_draws(mcmc)
        for name, value in draws.values.items():
            samples.setdefault(name, []).append(value)
        diverging.append(draws.diverging[0])
    return NutsResult({n: torch.stack(v) for n, v in samples.items()}, torch.stack(diverging), seconds)


def to_arviz(model, data=None, mask=None, *, guide=None, mcmc=None, args=(), kwargs=None,
             num_draws: int = 500, local_rows=None, seed: int = 0):
    """ArviZ data (InferenceData for arviz 0.23, DataTree for 1.x) of any Pyro model's posterior.

    Args:
        model: the model, called as SVI calls it: ``model(*args, **kwargs)`` (a function, a
            PyroModule, a model using ``pyro.param``). For NUTS on a dlvm model, the model it ran on
            (e.g. ``Marginalized(model)``).
        data, mask: dlvm's calling convention instead of ``args``: rows (N, ...) and their mask,
            the model called as ``model(x, mask)``.
        guide: a fitted guide (any AutoGuide, a hand-written one, dlvm's): ``num_draws``
            independent draws, stored as 1 chain x S draws.
        mcmc: instead of ``guide``, a ``pyro.infer.MCMC`` that has run or dlvm's :class:`NutsResult`.
        args, kwargs: the model's arguments: observations and covariates, as for ``SVI.step``.
        local_rows: rows whose latents in the ``"data"`` plate go into the posterior (dim ``z_row``).
    """
    groups, coords, dims = posterior_groups(
        model, data, mask, guide=guide, mcmc=mcmc, args=args, kwargs=kwargs, num_draws=num_draws,
        local_rows=local_rows, seed=seed)
    return arviz_adapter.from_dict(groups, coords=coords, dims=dims)


@torch.no_grad()
def posterior_groups(model, data=None, mask=None, *, guide=None, mcmc=None, args=(), kwargs=None,
                     num_draws: int = 500, local_rows=None, seed: int = 0) -> tuple[dict, dict, dict]:
    """The groups of :func:`to_arviz` as numpy arrays: ({group: {var: array}}, coords, dims)."""
    if (guide is None) == (mcmc is None):
        raise ValueError("give exactly one of guide (an SVI fit) or mcmc (a pyro.infer.MCMC or NUTS result)")
    if data is not None and (args or not isinstance(model, torch.nn.Module)):
        raise ValueError("data and mask are for dlvm models (called as model(x, mask)); pass any other "
                         "model's arguments as args=(...) and kwargs={...}")
    pyro.set_rng_seed(seed)
    x = None
    if data is not None:
        x, mask = model_observations(model, data, mask)
        args = (x, mask)
    with _named_call_errors(args, kwargs):
        if guide is not None:
            draws = sample_guide(guide, num_draws, args, kwargs, dtype=None if x is None else x.dtype)
        else:
            draws = mcmc_draws(mcmc)
        trace = conditioned_trace(model, {n: v[0] for n, v in draws.values.items()}, args, kwargs)
    observed = observed_sites(trace, draws.values)
    values = _observations(observed, x, mask)
    if x is not None and declares(model, "exact_marginal"):
        log_lik = _exact_log_likelihood(model, draws, trace, x, mask)
    else:
        log_lik = over_draws(log_likelihood_of_draw(model, args, kwargs), draws.values, draws.num)
    derived = list(deterministic_sites(trace))
    shapes = {**{n: values[n].shape for n in observed}, **{n: trace.nodes[n]["value"].shape for n in derived}}
    predicted = posterior_predictive(model, draws, shapes, args, kwargs) if shapes else {}
    posterior = Draws({**draws.values, **{n: predicted.pop(n) for n in derived}}, draws.chains, draws.per_chain,
                      draws.diverging)
    return _groups(trace, posterior, log_lik, predicted, values, local_rows)


@contextmanager
def _named_call_errors(args, kwargs):
    """A model or guide called with the wrong arguments: one line naming the fix."""
    try:
        yield
    except TypeError as error:
        if "argument" not in str(error):
            raise
        raise ValueError(f"calling the model or guide with {len(args)} args and kwargs {sorted(kwargs or {})} "
                         f"failed ({error}): pass their arguments as SVI.step gets them, args=(...), "
                         "kwargs={...}") from error


def _observations(observed: dict, x, mask) -> dict[str, torch.Tensor]:
    """{site: value} of the observed sites; dlvm's rows ``x`` (NaN where missing) are the
    observation ``"x"``, also where the model observes them through ``pyro.factor``."""
    values = {name: observed_value(name, site) for name, site in observed.items()}
    if x is not None:
        values[OBSERVED] = x if mask is None else torch.where(mask, x, torch.nan)
    if not values:
        raise ValueError("the model observes no site: pass the data it conditions on (obs=...) in args or kwargs")
    return values


def _exact_log_likelihood(model, draws: Draws, trace, x, mask) -> dict[str, torch.Tensor]:
    """{"x": log p(x_i | globals) (S, rows)} of a dlvm model with an exact ``log_marginal``: the
    draw supplies the globals, the local latent is integrated out."""
    globals_ = {n: v for n, v in draws.values.items() if n in trace.nodes and rows_plate_dim(trace.nodes[n]) is None}

    def exact(values: dict) -> dict:
        return {OBSERVED: call_in_context(model, poutine.condition(model.log_marginal, data=values), x, mask)}

    return over_draws(exact, globals_, draws.num)


def _local_rows(local_rows, site) -> torch.Tensor:
    """``local_rows`` as an index tensor, checked against the size of the site's ``"data"`` plate."""
    rows = site["value"].shape[rows_plate_dim(site)]
    index = torch.as_tensor(np.asarray(local_rows, dtype=int))
    if index.numel() and (int(index.min()) < -rows or int(index.max()) >= rows):
        raise ValueError(f"local_rows must index the {rows} rows of the data")
    return index % rows


def _posterior(trace, draws: Draws, local_rows, names: dict, dims: dict, coords: dict) -> dict:
    """The posterior group: the model's latent sites, per-row locals only for ``local_rows``."""
    posterior = {}
    for name, value in draws.values.items():
        site = trace.nodes.get(name)
        if site is None:  # a guide-only site: not part of the model's posterior
            continue
        site_dim_names = site_dims(names[name], site, value.ndim - 1)
        rows_dim = rows_plate_dim(site)
        if rows_dim is not None:
            if local_rows is None:
                continue
            index = _local_rows(local_rows, site)
            value = value.index_select(rows_dim, index.to(value.device))
            site_dim_names[rows_dim] = LOCAL_ROWS_DIM
            coords[LOCAL_ROWS_DIM] = index.numpy()
        posterior[names[name]] = draws.by_chain(value)
        dims[names[name]] = site_dim_names
    return posterior


def _groups(trace, draws: Draws, log_lik: dict, replicated: dict, observed: dict, local_rows):
    """(groups, coords, dims) of the draws, with dims named after the sites' plates."""
    names = short_names(list(draws.values) + list(observed))
    dims, coords = {}, {}
    posterior = _posterior(trace, draws, local_rows, names, dims, coords)
    for name, value in observed.items():
        site = trace.nodes.get(name)
        if site is None or site["infer"].get("is_auxiliary"):  # dlvm rows observed through pyro.factor
            dims[names[name]] = [ROWS_PLATE] + [f"{names[name]}_dim_{i}" for i in range(value.ndim - 1)]
        else:
            dims[names[name]] = site_dims(names[name], site, value.ndim)
    groups = {
        "posterior": posterior,
        "posterior_predictive": {names[n]: draws.by_chain(v) for n, v in replicated.items()},
        "log_likelihood": {names[n]: draws.by_chain(v) for n, v in log_lik.items()},
        "observed_data": {names[n]: as_numpy(v) for n, v in observed.items()},
    }
    if draws.diverging is not None:
        groups["sample_stats"] = {"diverging": as_numpy(draws.diverging)}
    return groups, coords, dims


def pareto_khat(log_weights: torch.Tensor) -> torch.Tensor:
    """PSIS Pareto k of each column of ``log_weights`` (S, B): a generalised Pareto fitted to the
    largest M = ceil(min(S / 5, 3 sqrt(S))) weights over their threshold (Vehtari et al. 2017)."""
    num = log_weights.shape[0]
    tail = int(math.ceil(min(0.2 * num, 3.0 * math.sqrt(num))))
    if tail < 5:
        raise ValueError(f"PSIS needs more draws: {num} gives only {tail} tail weights")
    out = []
    for column in log_weights.T:
        lw = torch.sort(column - column.max()).values.double()
        cutoff = lw[-tail - 1]
        k, _ = fit_generalized_pareto(lw[-tail:].exp() - cutoff.exp())
        out.append(float(k))
    return torch.tensor(out)


@torch.no_grad()
def psis_khat(model, guide, data, mask=None, num_draws: int = 200, seed: int = 0) -> np.ndarray:
    """k-hat per row (B,) of the importance weights log p(x_i, z) - log q(z | x_i), z ~ q, from
    ``num_draws`` draws (:func:`dlvm.inference.log_weights`). Above
    ``arviz_adapter.khat_threshold(num_draws)`` (0.7 at most) the guide is a poor importance sampler
    for that row."""
    pyro.set_rng_seed(seed)
    x, mask = model_observations(model, data, mask)
    draws = torch.stack([log_weights(model, guide, x, mask) for _ in range(num_draws)])
    return pareto_khat(draws.cpu()).numpy()
