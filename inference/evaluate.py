"""Honest evaluation: the ELBO, the importance-weighted bound IWAE-K, and the exact log-likelihood
with the gap log p(x) - ELBO = KL(q(z|x) || p(z|x)) where it is tractable (§6.4.4).

Two ways, as for :func:`dlvm.inference.fit`:

* ``evaluate(model, guide, args=(...), kwargs={...}, num_samples=K)``: any Pyro model and guide;
  K joint draws of every latent (globals included) give the ELBO and IWAE-K of log p(data) for
  the whole data set (:class:`Bounds`). Sites marked for enumeration are summed out.
* ``evaluate(model, guide, data, mask)``: dlvm's row models, per row (:class:`Evaluation`). With
  global latents the per-row IWAE shares one draw of the globals across rows; it is then not a
  bound on log p(x_i) (``iwae_is_bound`` is False), which the whole-data IWAE above is.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import pyro.poutine as poutine
import torch
from pyro.infer import TraceEnum_ELBO

from ..models.base import declares, placement
from ..models.sites import enumerated_sites, in_plate, is_latent, is_observed

from .data import as_observations
from .engine import guide_latents
from .streaming import RowSource, chunks


def _per_row(log_prob: torch.Tensor, frame_dim: int, rows: int) -> torch.Tensor:
    """Sum a site's log-density over every batch dim but the ``"data"`` plate's: (rows,)."""
    while log_prob.ndim < -frame_dim:
        log_prob = log_prob.unsqueeze(0)
    log_prob = log_prob.movedim(frame_dim, 0)
    return log_prob.reshape(log_prob.shape[0], -1).sum(-1).expand(rows)


def _site_terms(trace, rows: int, skip=()) -> tuple[torch.Tensor, torch.Tensor]:
    """(per-row local log-density (rows,), summed global log-density) of a trace's sample sites."""
    local = torch.zeros(rows)
    global_ = torch.zeros(())
    for name, site in trace.nodes.items():
        if not (is_latent(site) or is_observed(site)) or name in skip:
            continue
        frames = [f for f in site["cond_indep_stack"] if f.name == "data"]
        log_prob = site["log_prob"]
        local, global_ = local.to(log_prob), global_.to(log_prob)
        if frames:
            local = local + _per_row(log_prob, frames[0].dim, rows)
        else:
            global_ = global_ + log_prob.sum()
    return local, global_


def log_weights(model, guide, x, mask=None) -> torch.Tensor:
    """One importance weight per row: log p(x_i, z_i) - log q(z_i | x_i) with z_i ~ q, shape (B,).

    Its expectation is the ELBO (eq. 6.7); logsumexp over K draws minus log K is IWAE-K. Global
    latent sites (Bayesian models) enter divided evenly over the rows.
    """
    rows = x.shape[0]
    guide_trace = poutine.trace(guide).get_trace(x, mask)
    model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(x, mask)
    model_trace.compute_log_prob()
    guide_trace.compute_log_prob()
    observed_in_guide = [n for n, s in guide_trace.nodes.items() if s["type"] == "sample" and s["is_observed"]]
    p_local, p_global = _site_terms(model_trace, rows)
    q_local, q_global = _site_terms(guide_trace, rows, skip=observed_in_guide)
    summed = enumerated_sites(model_trace, guide_trace)
    if summed:
        # the ELBO sums these discrete latents out exactly; replaying would have drawn them from
        # the prior instead. Their exact sum is the model's local marginal given the guide's globals.
        if not declares(model, "exact_marginal"):
            raise ValueError(
                f"the guide leaves {', '.join(summed)} to enumeration, but {type(model).__name__} "
                "has no exact log_marginal to evaluate the enumerated ELBO with"
            )
        p_local = poutine.replay(model.log_marginal, trace=guide_trace)(x, mask)
    return p_local - q_local + (p_global - q_global) / rows


@dataclass
class Bounds:
    """Bounds on log p(data) of a whole data set (nats): ``elbo`` <= ``iwae`` <= log p(data).

    ``elbo_se`` is the Monte-Carlo standard error of the ELBO from the ``num_samples`` draws.
    """

    elbo: float
    iwae: float
    elbo_se: float
    num_samples: int

    def summary(self) -> dict:
        return {"elbo": self.elbo, "elbo_se": self.elbo_se, "iwae": self.iwae, "iwae_samples": self.num_samples}


def _joint_log_weight(model, guide, args, kwargs, enumerated: bool, max_plate_nesting) -> torch.Tensor:
    """log p(data, latents) - log q(latents) for one joint draw of the guide (enumerated sites
    summed out)."""
    if enumerated:
        return -torch.as_tensor(TraceEnum_ELBO(max_plate_nesting=max_plate_nesting).loss(model, guide, *args, **kwargs))
    guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
    model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(*args, **kwargs)
    return model_trace.log_prob_sum() - guide_trace.log_prob_sum(lambda name, site: is_latent(site))


@torch.no_grad()
def evaluate_model(model, guide, args=(), kwargs=None, *, num_samples: int = 100) -> Bounds:
    """ELBO and IWAE-K of log p(data) for any model and guide called as ``model(*args, **kwargs)``
    (see the module docstring). A guide that draws nothing takes one draw."""
    if num_samples < 1:
        raise ValueError(f"the number of importance samples must be at least 1, got {num_samples}")
    kwargs = dict(kwargs or {})
    with poutine.block():
        guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
        model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(*args, **kwargs)
    enumerated = bool(enumerated_sites(model_trace, guide_trace))
    if not any(is_latent(site) for site in guide_trace.nodes.values()):
        num_samples = 1
    nesting = getattr(model, "max_plate_nesting", math.inf)
    with poutine.block():
        draws = torch.stack([_joint_log_weight(model, guide, args, kwargs, enumerated, nesting).double()
                             for _ in range(num_samples)])
    se = float(draws.std() / math.sqrt(num_samples)) if num_samples > 1 else 0.0
    return Bounds(elbo=float(draws.mean()), iwae=float(torch.logsumexp(draws, 0) - math.log(num_samples)),
                  elbo_se=se, num_samples=num_samples)


@dataclass
class Evaluation:
    """Per-row bounds (nats): ``elbo`` <= ``iwae`` <= ``log_likelihood`` (when known).

    ``iwae_is_bound`` is False when the guide draws global latents: each row's IWAE then shares a
    draw of the globals and bounds nothing per row (use :func:`evaluate_model` for the whole data).
    """

    elbo: torch.Tensor
    iwae: torch.Tensor
    log_likelihood: torch.Tensor | None
    num_samples: int
    iwae_is_bound: bool = True

    def summary(self) -> dict:
        """Means per row, and the gap exact - ELBO where the exact value is known."""
        out = {"elbo": float(self.elbo.mean()), "iwae": float(self.iwae.mean()),
               "iwae_samples": self.num_samples, "iwae_is_bound": self.iwae_is_bound,
               "log_likelihood": None, "gap": None}
        if self.log_likelihood is not None:
            out["log_likelihood"] = float(self.log_likelihood.mean())
            out["gap"] = out["log_likelihood"] - out["elbo"]
        return out


@torch.no_grad()
def evaluate(model, guide, data=None, mask=None, *, args=(), kwargs=None, num_samples: int = 100,
             batch_size: int = 1024):
    """ELBO and IWAE-K from the same K draws of the guide.

    Without ``data``: :func:`evaluate_model` on ``model(*args, **kwargs)`` -> :class:`Bounds`
    for the whole data set. With ``data`` (dlvm's row models): per row, plus the exact log p(x)
    where the model has ``log_marginal`` -> :class:`Evaluation`. A guide that samples nothing
    (exact or enumerated) gives the same value for every draw, so one draw is taken. Runs on the
    model's device and dtype; ``data`` may be a :class:`~dlvm.inference.streaming.RowSource`,
    read in chunks of ``batch_size`` rows.
    """
    if data is None:
        return evaluate_model(model, guide, args, kwargs, num_samples=num_samples)
    if num_samples < 1:
        raise ValueError(f"the number of importance samples must be at least 1, got {num_samples}")
    device, dtype = placement(model)
    streaming = isinstance(data, RowSource)
    if streaming:
        if mask is not None:
            raise ValueError("a streamed data source has no mask")
        x = data
        probe_x, probe_m = as_observations(data.rows(0, 2), dtype=dtype, device=device)
    else:
        x, mask = as_observations(data, mask, dtype=dtype, device=device)
        probe_x, probe_m = x[:2], None if mask is None else mask[:2]
    latents = guide_latents(guide, probe_x, probe_m)
    if not latents:
        num_samples = 1
    elbos, iwaes, exact = [], [], []
    for xb, mb in chunks(x, mask, batch_size):
        if streaming:
            xb, mb = as_observations(xb, dtype=dtype, device=device)
        draws = torch.stack([log_weights(model, guide, xb, mb) for _ in range(num_samples)])
        elbos.append(draws.mean(0))
        iwaes.append(torch.logsumexp(draws, 0) - math.log(num_samples))
        if declares(model, "exact_marginal"):
            # a Bayesian model's globals are taken from one draw of the guide
            exact.append(poutine.replay(model.log_marginal, trace=poutine.trace(guide).get_trace(xb, mb))(xb, mb))
    return Evaluation(
        elbo=torch.cat(elbos).cpu(), iwae=torch.cat(iwaes).cpu(),
        log_likelihood=torch.cat(exact).cpu() if exact else None, num_samples=num_samples,
        iwae_is_bound=all(in_plate(site, "data") for site in latents.values()),
    )
