"""Posterior diagnostics: ArviZ data from an SVI fit or from NUTS, and PSIS k-hat of a guide.

:func:`to_arviz` arranges posterior draws for ArviZ through :mod:`dlvm.inference.arviz_adapter`
(the only module that imports arviz), with the groups

* ``posterior``: global latents (Bayesian models) and, for SVI, the local latents of chosen rows
  (dim ``z_row``); SVI draws are independent, stored as 1 chain x S draws;
* ``posterior_predictive``: replicated ``x`` from :class:`pyro.infer.Predictive` on the model with
  its observation unconditioned (dims ``row``, ...);
* ``log_likelihood``: log p(x_i | theta) per row and draw (the model's exact ``log_marginal`` with
  the globals of the draw where it exists, else log p(x_i | z_i, theta)), so ``loo`` works;
* ``observed_data`` and, for NUTS, ``sample_stats`` (``diverging``).

:func:`psis_khat` is the Pareto k of each row's importance weights log p(x_i, z) - log q(z | x_i)
(Yao et al. 2018): k > 0.7 marks the rows where the guide is a poor importance sampler.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import pyro
import pyro.poutine as poutine
import torch
from pyro.infer import MCMC, NUTS, Predictive
from pyro.ops.stats import fit_generalized_pareto

from dlvm.models.base import call_in_context

from . import arviz_adapter
from .sites import latent_sites
from .estimators import model_observations
from .evaluate import _per_row, log_weights

OBSERVED = "x"


def _in_data_plate(site) -> bool:
    return any(frame.name == "data" for frame in site["cond_indep_stack"])


def _latent_sites(trace):
    """Latent sites of a guide trace other than an autoguide's auxiliary ones."""
    return {name: site for name, site in latent_sites(trace).items() if not site["infer"].get("is_auxiliary")}


def guide_draws(guide, x, mask=None, num_draws: int = 500) -> dict[str, torch.Tensor]:
    """``num_draws`` independent draws of every latent site of the guide: {site: (S, ...)}."""
    draws: dict[str, list] = {}
    with torch.no_grad():
        for _ in range(num_draws):
            trace = poutine.trace(guide).get_trace(x, mask)
            for name, site in _latent_sites(trace).items():
                value = site["value"].detach()
                # lazily built guide parameters (AutoNormal) may not share the data's dtype
                draws.setdefault(name, []).append(value.to(x.dtype) if value.is_floating_point() else value)
    return {name: torch.stack(values) for name, values in draws.items()}


def global_site_names(guide, x, mask=None) -> list[str]:
    """Latent sites of the guide outside the ``"data"`` plate (the model's global latents)."""
    with torch.no_grad(), poutine.block():
        trace = poutine.trace(guide).get_trace(x, mask)
    return [n for n, s in _latent_sites(trace).items() if not _in_data_plate(s)]


@torch.no_grad()
def pointwise_log_likelihood(model, draws: dict, x, mask=None) -> torch.Tensor:
    """log p(x_i | draw s) per draw and row, shape (S, B).

    With ``model.log_marginal`` (exact) the local latent is integrated out and the draw supplies the
    globals; otherwise the draw's local latents are conditioned on too.
    """
    num = next(iter(draws.values())).shape[0] if draws else 1
    rows = []
    for s in range(num):
        values = {name: v[s] for name, v in draws.items()}
        if hasattr(model, "log_marginal"):
            conditioned = poutine.condition(model.log_marginal, data=values)
            rows.append(call_in_context(model, conditioned, x, mask))
            continue
        trace = poutine.trace(poutine.condition(model, data=values)).get_trace(x, mask)
        site = trace.nodes[OBSERVED]
        frame = next(f for f in site["cond_indep_stack"] if f.name == "data")
        rows.append(_per_row(site["fn"].log_prob(site["value"]), frame.dim, x.shape[0]))
    return torch.stack(rows)


@torch.no_grad()
def posterior_predictive(model, draws: dict, x, mask=None, num_draws: int | None = None) -> torch.Tensor:
    """Replicated observations (S, B, ...) given each draw: Predictive on the unconditioned model."""
    if draws:
        predictive = Predictive(poutine.uncondition(model), posterior_samples=draws, return_sites=[OBSERVED])
    else:
        predictive = Predictive(poutine.uncondition(model), num_samples=num_draws or 1, return_sites=[OBSERVED])
    return predictive(x, mask)[OBSERVED]


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
    from dlvm.guides.globals import _start_from_model  # the same start as the guide on globals

    if num_samples < 1 or warmup < 0 or chains < 1:
        raise ValueError(f"need num_samples >= 1, warmup >= 0, chains >= 1; got {num_samples}, {warmup}, {chains}")
    x, mask = model_observations(model, data, mask)
    if initialize and hasattr(model, "initialize"):
        model.initialize(x, mask)
    samples, diverging, seconds = {}, [], 0.0
    for chain in range(chains):
        pyro.set_rng_seed(seed + chain)
        kernel = NUTS(model, init_strategy=_start_from_model(model), target_accept_prob=target_accept,
                      max_plate_nesting=getattr(model, "max_plate_nesting", 1))
        mcmc = MCMC(kernel, num_samples=num_samples, warmup_steps=warmup, disable_progbar=True)
        began = time.perf_counter()
        mcmc.run(x, mask)
        seconds += time.perf_counter() - began
        for name, value in mcmc.get_samples().items():
            samples.setdefault(name, []).append(value.detach())
        flags = torch.zeros(num_samples, dtype=torch.bool)
        flags[list(mcmc.diagnostics().get("divergences", {}).get("chain 0", []))] = True
        diverging.append(flags)
    return NutsResult({n: torch.stack(v) for n, v in samples.items()}, torch.stack(diverging), seconds)


def _short_names(names) -> dict[str, str]:
    """Site name -> ArviZ variable name: the last dotted part where that is unambiguous."""
    short = {n: n.split(".")[-1] for n in names}
    counts = {}
    for value in short.values():
        counts[value] = counts.get(value, 0) + 1
    return {n: (s if counts[s] == 1 else n) for n, s in short.items()}


def _numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().double().numpy() if t.is_floating_point() else t.detach().cpu().numpy()


def to_arviz(model, data, mask=None, *, guide=None, mcmc: NutsResult | None = None, num_draws: int = 500,
             local_rows=None, seed: int = 0):
    """ArviZ data (InferenceData for arviz 0.23, DataTree for 1.x) from an SVI fit or from NUTS.

    Args:
        model: the model the guide or NUTS ran on (e.g. ``Marginalized(model)`` for NUTS).
        data, mask: the observations (N, ...).
        guide: an SVI guide: ``num_draws`` independent draws, stored as 1 chain x S draws.
        mcmc: a :class:`NutsResult` (chains x draws), instead of ``guide``.
        local_rows: indices of rows whose local latents (SVI only) go into the posterior.
    """
    if (guide is None) == (mcmc is None):
        raise ValueError("give exactly one of guide (an SVI fit) or mcmc (a NUTS result)")
    pyro.set_rng_seed(seed)
    x, mask = model_observations(model, data, mask)
    rows = x.shape[0]
    if guide is not None:
        draws = guide_draws(guide, x, mask, num_draws)
        globals_ = global_site_names(guide, x, mask)
        global_draws = {n: draws[n] for n in globals_}
        chains, per_chain = 1, num_draws
        # the likelihood and predictive use the globals and, where z is not integrated out, z
        conditioning = global_draws if hasattr(model, "log_marginal") else draws
        predictive_draws = draws
    else:
        chains, per_chain = next(iter(mcmc.samples.values())).shape[:2] if mcmc.samples else (1, num_draws)
        global_draws = {n: v.reshape(chains * per_chain, *v.shape[2:]) for n, v in mcmc.samples.items()}
        conditioning = predictive_draws = global_draws
    log_lik = pointwise_log_likelihood(model, conditioning, x, mask)
    if log_lik.shape[0] == 1 and chains * per_chain > 1:  # nothing latent: the same every draw
        log_lik = log_lik.expand(chains * per_chain, rows)
    replicated = posterior_predictive(model, predictive_draws, x, mask, chains * per_chain)

    def sampled(t):
        return _numpy(t.reshape(chains, per_chain, *t.shape[1:]))

    names = _short_names(global_draws)
    posterior = {names[n]: sampled(v) for n, v in global_draws.items()}
    coords = {"row": np.arange(rows)}
    dims = {OBSERVED: ["row"] + [f"{OBSERVED}_dim_{i}" for i in range(x.ndim - 1)]}
    for n, v in global_draws.items():
        dims[names[n]] = [f"{names[n]}_dim_{i}" for i in range(v.ndim - 1)]
    if guide is not None and local_rows is not None:
        local_rows = np.asarray(local_rows, dtype=int)
        if local_rows.size and (local_rows.min() < -rows or local_rows.max() >= rows):
            raise ValueError(f"local_rows must index the {rows} rows of the data")
        coords["z_row"] = local_rows
        for n, v in draws.items():
            if n not in global_draws:
                picked = v[:, torch.as_tensor(local_rows, device=v.device)]
                posterior[n] = sampled(picked)
                dims[n] = ["z_row"] + [f"{n}_dim_{i}" for i in range(picked.ndim - 2)]
    observed = _numpy(x)
    if mask is not None:
        observed = np.where(_numpy(mask), observed, np.nan)
    groups = {
        "posterior": posterior,
        "posterior_predictive": {OBSERVED: sampled(replicated)},
        "log_likelihood": {OBSERVED: sampled(log_lik)},
        "observed_data": {OBSERVED: observed},
    }
    if mcmc is not None:
        groups["sample_stats"] = {"diverging": _numpy(mcmc.diverging)}
    return arviz_adapter.from_dict(groups, coords=coords, dims=dims)


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
    ``num_draws`` draws (:func:`dlvm.inference.log_weights`). Below 0.5 the guide is a good
    importance sampler for that row; above 0.7 it is a poor one."""
    pyro.set_rng_seed(seed)
    x, mask = model_observations(model, data, mask)
    draws = torch.stack([log_weights(model, guide, x, mask) for _ in range(num_draws)])
    return pareto_khat(draws.cpu()).numpy()
