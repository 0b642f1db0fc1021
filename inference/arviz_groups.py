"""Posterior draws of any Pyro model, arranged as the groups of an ArviZ data set (numpy only).

The model and guide are called as :class:`pyro.infer.SVI` calls them, ``model(*args, **kwargs)``;
covariates are ordinary arguments. Everything about a site (its plates, its event dims, whether it
is observed) is read from a trace of the model conditioned on a draw:

* latent sites (any name; globals and plate-locals) and ``pyro.deterministic`` sites go into
  ``posterior``;
* observed sites (any name, any number) go into ``log_likelihood`` (the log-density of every batch
  element: the elements are independent given the draw, so PSIS-LOO can leave each one out),
  ``observed_data`` and ``posterior_predictive`` (:class:`pyro.infer.Predictive` on
  ``poutine.uncondition(model)``).

Dims are named after plates: a site in ``pyro.plate("schools", 8)`` has the dim ``"schools"``;
other batch dims and the event dims of site ``NAME`` are ``NAME_dim_0``, ``NAME_dim_1``, ...
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyro.poutine as poutine
import torch
from pyro.infer import MCMC, Predictive
from pyro.poutine.uncondition_messenger import UnconditionMessenger

from ..models.sites import deterministic_sites, latent_sites, observed_sites

#: the plate whose latents are per-row locals (dlvm's rows, Pyro's usual name for the data plate)
ROWS_PLATE = "data"


@dataclass
class Draws:
    """Posterior draws {site: (chains * per_chain, ...)}; for MCMC also ``diverging`` (chains, per_chain)."""

    values: dict[str, torch.Tensor]
    chains: int
    per_chain: int
    diverging: torch.Tensor | None = None

    @property
    def num(self) -> int:
        return self.chains * self.per_chain

    def by_chain(self, t: torch.Tensor) -> np.ndarray:
        """A (num, ...) tensor as a (chain, draw, ...) numpy array."""
        return as_numpy(t.reshape(self.chains, self.per_chain, *t.shape[1:]))


def as_numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().double().numpy() if t.is_floating_point() else t.detach().cpu().numpy()


@torch.no_grad()
def sample_guide(guide, num: int, args=(), kwargs=None, dtype: torch.dtype | None = None) -> Draws:
    """``num`` independent draws of every latent site of ``guide(*args, **kwargs)`` (1 chain)."""
    draws: dict[str, list] = {}
    for _ in range(num):
        trace = poutine.trace(guide).get_trace(*args, **(kwargs or {}))
        for name, site in latent_sites(trace).items():
            value = site["value"].detach()
            if dtype is not None and value.is_floating_point():
                value = value.to(dtype)  # lazily built guides (AutoNormal) may differ from the data
            draws.setdefault(name, []).append(value)
    return Draws({name: torch.stack(values) for name, values in draws.items()}, 1, num)


def _divergences(mcmc: MCMC, chains: int, per_chain: int) -> torch.Tensor:
    """(chains, per_chain) flags of the divergent transitions Pyro's NUTS/HMC recorded."""
    flags = torch.zeros(chains, per_chain, dtype=torch.bool)
    found = mcmc.diagnostics().get("divergences", {})
    for chain in range(chains):
        flags[chain, list(found.get(f"chain {chain}", []))] = True
    return flags


def mcmc_draws(mcmc) -> Draws:
    """The draws of a ``pyro.infer.MCMC`` that has run, or of an object with ``samples``
    {site: (chains, draws, ...)} and ``diverging`` (chains, draws) such as dlvm's NUTS result."""
    if isinstance(mcmc, MCMC):
        samples, diverging = mcmc.get_samples(group_by_chain=True), None  # None before mcmc.run
    elif isinstance(getattr(mcmc, "samples", None), dict) and hasattr(mcmc, "diverging"):
        samples, diverging = mcmc.samples, mcmc.diverging
    else:
        raise ValueError(f"mcmc must be a pyro.infer.MCMC that has run or dlvm's NutsResult, not {type(mcmc).__name__}")
    if not samples:
        raise ValueError("the MCMC has no draws: call mcmc.run(*args, **kwargs) first (on a model with latent sites)")
    chains, per_chain = next(iter(samples.values())).shape[:2]
    if diverging is None:
        diverging = _divergences(mcmc, chains, per_chain)
    values = {name: v.detach().reshape(chains * per_chain, *v.shape[2:]) for name, v in samples.items()}
    return Draws(values, chains, per_chain, diverging)


def conditioned_trace(model, values: dict, args=(), kwargs=None):
    """The trace of ``model(*args, **kwargs)`` with its latent sites set to ``values`` (which
    makes them observed sites of the trace)."""
    return poutine.trace(poutine.condition(model, data=values)).get_trace(*args, **(kwargs or {}))


def over_draws(function: Callable[[dict], dict], values: dict, num: int) -> dict:
    """{name: (num, ...)}: ``function`` of each draw {site: value}, stacked (once if nothing is drawn)."""
    if not values:
        once = function({})
        return {name: v.unsqueeze(0).expand(num, *v.shape) for name, v in once.items()}
    results = [function({name: v[s] for name, v in values.items()}) for s in range(num)]
    return {name: torch.stack([r[name] for r in results]) for name in results[0]}


def _check_not_subsampled(name: str, site) -> None:
    for frame in site["cond_indep_stack"]:
        full = getattr(frame, "full_size", None)
        if frame.vectorized and full is not None and frame.size != full:
            raise ValueError(
                f"site {name!r} is in plate {frame.name!r} subsampled to {frame.size} of {full}: call the "
                "model on the whole data (no subsample_size) for ArviZ"
            )


def pointwise_log_prob(name: str, site) -> torch.Tensor:
    """The log-density of an observed site per batch element (masked elements 0), shape batch."""
    _check_not_subsampled(name, site)
    log_prob = site["fn"].log_prob(site["value"])
    if site["mask"] is not None:
        log_prob = torch.where(torch.as_tensor(site["mask"], device=log_prob.device), log_prob, 0.0)
    return log_prob.expand(torch.broadcast_shapes(log_prob.shape, site["fn"].batch_shape))


def observed_value(name: str, site) -> torch.Tensor:
    """An observed site's value over its whole batch and event shape."""
    fn = site["fn"]
    shape = torch.broadcast_shapes(site["value"].shape, fn.batch_shape + fn.event_shape)
    if shape != fn.batch_shape + fn.event_shape:
        raise ValueError(
            f"observed site {name!r} holds {tuple(shape)} values but its distribution has shape "
            f"{tuple(fn.batch_shape + fn.event_shape)}: expand the distribution over the data (a pyro.plate, "
            ".expand or .to_event) so that it can be replicated"
        )
    return site["value"].expand(shape)


def log_likelihood_of_draw(model, args=(), kwargs=None) -> Callable[[dict], dict]:
    """draw -> {observed site: log-density per batch element} of the model conditioned on the draw."""
    def log_likelihood(values: dict) -> dict:
        trace = conditioned_trace(model, values, args, kwargs)
        missing = list(latent_sites(trace))  # the latents no draw set
        if missing:
            raise ValueError(
                f"latent site(s) {', '.join(missing)} of the model have no posterior draws (e.g. discrete "
                "sites enumerated away): sample them in the guide, or integrate them out in the model"
            )
        return {name: pointwise_log_prob(name, site) for name, site in observed_sites(trace, values).items()}
    return log_likelihood


class _Uncondition(UnconditionMessenger):
    """``poutine.uncondition`` that keeps ``pyro.deterministic`` values (resampling their Delta
    would broadcast it over the plates)."""

    def _pyro_sample(self, msg) -> None:
        if not msg["infer"].get("_deterministic"):
            super()._pyro_sample(msg)


@torch.no_grad()
def posterior_predictive(model, draws: Draws, shapes: dict, args=(), kwargs=None) -> dict[str, torch.Tensor]:
    """Sites {name: (num, *shapes[name])} given each draw, by Predictive on the model with its
    observations unconditioned: replicated observations, and deterministic sites."""
    unconditioned = _Uncondition()(model)
    if draws.values:
        predictive = Predictive(unconditioned, posterior_samples=draws.values, return_sites=list(shapes))
    else:
        predictive = Predictive(unconditioned, num_samples=draws.num, return_sites=list(shapes))
    out = predictive(*args, **(kwargs or {}))
    # Predictive pads sites with fewer batch dims than the model's plates
    return {name: out[name].reshape(draws.num, *shape) for name, shape in shapes.items()}


def _event_dim(site) -> int:
    """The event dims of a site's value; a ``pyro.deterministic`` value inside plates (whose event
    dims default to all of its dims) keeps its plate dims."""
    fn, value = site["fn"], site["value"]
    if fn.batch_shape + fn.event_shape == value.shape:
        return fn.event_dim
    return max(0, value.ndim - len(fn.batch_shape))


def site_dims(name: str, site, ndim: int) -> list[str]:
    """Dim names of a site's value of ``ndim`` dims: plate dims after their plates, the others
    ``NAME_dim_k`` (the log-density, batch dims only, takes the leading ones)."""
    event_dim = _event_dim(site)
    batch = ndim - event_dim
    plates = {f.dim: f.name for f in site["cond_indep_stack"] if f.vectorized}
    names, k = [], 0
    for position in range(-batch, 0):
        if position in plates:
            names.append(plates[position])
        else:
            names.append(f"{name}_dim_{k}")
            k += 1
    return names + [f"{name}_dim_{k + i}" for i in range(event_dim)]


def rows_plate_dim(site) -> int | None:
    """The tensor dim (negative, of the value) of the site's ``"data"`` plate, None outside it."""
    for frame in site["cond_indep_stack"]:
        if frame.vectorized and frame.name == ROWS_PLATE:
            return frame.dim - _event_dim(site)
    return None


def short_names(names) -> dict[str, str]:
    """Site name -> ArviZ variable name: the last dotted part where that is unambiguous."""
    short = {n: n.split(".")[-1] for n in names}
    counts: dict[str, int] = {}
    for value in short.values():
        counts[value] = counts.get(value, 0) + 1
    return {n: (s if counts[s] == 1 else n) for n, s in short.items()}
