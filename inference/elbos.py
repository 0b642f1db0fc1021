"""ELBO estimators by name. The engine never knows which one it runs.

=============  =====================================================================
``trace``      Trace_ELBO: reparameterised gradients where the guide allows them,
               score-function terms elsewhere (§6.4.3)
``tracegraph`` TraceGraph_ELBO: score-function terms with Rao-Blackwellisation and
               baselines, for discrete or non-reparameterised latents
``traceenum``  TraceEnum_ELBO: discrete latents summed out exactly
``meanfield``  TraceMeanField_ELBO: analytic KL(q || p) where it is known
``renyi``      RenyiELBO with ``alpha`` (alpha = 0 is the IWAE bound)
=============  =====================================================================

``jit-trace``, ``jit-meanfield`` and ``jit-traceenum`` compile the loss with the PyTorch JIT
(:class:`ModuleJit`: parameters that live in modules, one compiled graph per input shape). There is
no ``jit-tracegraph``: Pyro's JitTraceGraph_ELBO looks parameters up in the global param store,
which dlvm's module-local parameters never enter.
"""
from __future__ import annotations

import math
import warnings

import pyro.infer as infer
import torch
from torch import nn

from ..models.registry import Registry

#: the estimators by name (the jit- ones compiled by :class:`ModuleJit`)
ESTIMATORS: Registry = Registry("ELBO", {
    "trace": infer.Trace_ELBO,
    "tracegraph": infer.TraceGraph_ELBO,
    "traceenum": infer.TraceEnum_ELBO,
    "meanfield": infer.TraceMeanField_ELBO,
    "renyi": infer.RenyiELBO,
    "jit-trace": infer.Trace_ELBO,
    "jit-meanfield": infer.TraceMeanField_ELBO,
    "jit-traceenum": infer.TraceEnum_ELBO,
})


def _sample_log_prob_sum(trace) -> torch.Tensor:
    return sum(site["log_prob_sum"] for site in trace.nodes.values() if site["type"] == "sample")


def _loss_terms(estimator, model, guide, args, kwargs):
    """(loss, surrogate loss) of one estimate: the value to report and the tensor to differentiate.

    Both stay tensors, so that under ``torch.jit.trace`` the value is computed by the graph: where
    Pyro's estimator hands back the value as a Python float (Trace_ELBO), it is recomputed from the
    traces as log p(x, z) - log q(z).
    """
    if not hasattr(estimator, "_differentiable_loss_particle"):
        surrogate = estimator.differentiable_loss(model, guide, *args, **kwargs)
        return surrogate.detach(), surrogate  # DiCE: the value is the ELBO itself
    loss, surrogate = 0.0, 0.0
    for model_trace, guide_trace in estimator._get_traces(model, guide, args, kwargs):
        particle, surrogate_particle = estimator._differentiable_loss_particle(model_trace, guide_trace)
        if not torch.is_tensor(particle):
            particle = _sample_log_prob_sum(guide_trace) - _sample_log_prob_sum(model_trace)
        loss = loss + particle.detach() / estimator.num_particles
        surrogate = surrogate + surrogate_particle / estimator.num_particles
    return loss, surrogate


class _Objective(nn.Module):
    """model + guide as one module whose forward is the estimator's (loss, surrogate loss).

    Holding both as submodules makes their parameters module parameters of the traced graph
    (inputs, not constants), which is what lets the JIT train them.
    """

    def __init__(self, estimator, model, guide, template, kwargs):
        super().__init__()
        self.model, self.guide = model, guide
        self.estimator, self.template, self.kwargs = estimator, template, kwargs

    def forward(self, *tensors):
        supply = iter(tensors)
        args = tuple(next(supply) if slot else None for slot in self.template)
        return _loss_terms(self.estimator, self.model, self.guide, args, self.kwargs)


class ModuleJit:
    """A Pyro ELBO whose loss is compiled with ``torch.jit.trace``, for module-local parameters.

    Pyro's JitTrace_ELBO looks parameters up in the global param store and fails for parameters
    that live in modules. Here the model and guide are traced together as one module, once per
    (model, guide, argument shapes, keyword arguments): the graph, random draws included, is then
    replayed without Python overhead. Arguments are tensors or None; the model must have a static
    structure for a given input shape. ``loss`` (no gradients) runs the estimator eagerly.
    """

    def __init__(self, estimator: infer.ELBO):
        self.estimator = estimator
        self._compiled: dict = {}

    def __getattr__(self, name):
        if name in ("estimator", "_compiled"):
            raise AttributeError(name)
        return getattr(self.estimator, name)

    def _compile(self, model, guide, args, kwargs):
        tensors = tuple(a for a in args if a is not None)
        key = (id(model), id(guide), tuple((t.shape, t.dtype, t.device) for t in tensors),
               tuple(a is not None for a in args), tuple(sorted(kwargs.items())))
        if key not in self._compiled:
            objective = _Objective(self.estimator, model, guide, tuple(a is not None for a in args), kwargs)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", torch.jit.TracerWarning)
                warnings.filterwarnings("ignore", r"`torch\.jit\.trace", DeprecationWarning)
                self._compiled[key] = torch.jit.trace(objective, tensors, check_trace=False)
        return self._compiled[key], tensors

    def loss_and_grads(self, model, guide, *args, **kwargs) -> float:
        compiled, tensors = self._compile(model, guide, args, kwargs)
        loss, surrogate = compiled(*tensors)
        if surrogate.requires_grad:
            surrogate.backward()
        return float(loss)

    def loss(self, model, guide, *args, **kwargs) -> float:
        return self.estimator.loss(model, guide, *args, **kwargs)

ELBO_NAMES: tuple[str, ...] = tuple(ESTIMATORS)


def _parse(spec: str, alpha: float | None) -> tuple[str, float]:
    """(name, Renyi alpha) of ``name`` or ``renyi:ALPHA``."""
    name, _, option = spec.partition(":")
    if name not in ESTIMATORS:
        raise ValueError(f"unknown ELBO {name!r}; choose one of: {', '.join(ELBO_NAMES)} (or pass a pyro.infer.ELBO)")
    if option and name != "renyi":
        raise ValueError(f"only renyi takes an option (renyi:ALPHA), got {spec!r}")
    if option:
        try:
            alpha = float(option)
        except ValueError:
            raise ValueError(f"renyi alpha must be a number, got {option!r}") from None
    return name, 0.0 if alpha is None else alpha


def make_elbo(spec, *, num_particles: int = 1, max_plate_nesting: float = math.inf,
              alpha: float | None = None):
    """The ELBO estimator ``spec``: a Pyro ELBO instance (returned as it is) or a name from the
    module docstring, ``renyi:ALPHA`` setting the Renyi alpha (or ``alpha``; default 0, the IWAE
    bound).

    ``max_plate_nesting`` comes from the model where it declares it, so that enumeration
    dimensions never collide with its plates; infinity lets Pyro find it.
    """
    if hasattr(spec, "loss_and_grads"):  # an ELBO instance, or a wrapper of one
        return spec
    if not isinstance(spec, str):
        raise ValueError(f"elbo must be a name or a pyro.infer.ELBO instance, got {type(spec).__name__}")
    name, alpha = _parse(spec, alpha)
    if num_particles < 1:
        raise ValueError(f"num_particles must be at least 1, got {num_particles}")
    options = dict(num_particles=num_particles, max_plate_nesting=max_plate_nesting)
    if name == "renyi":
        if alpha == 1.0:
            raise ValueError("renyi alpha must differ from 1 (alpha = 1 is the plain ELBO: use 'trace')")
        options["alpha"] = alpha
    if name.startswith("jit-"):
        return ModuleJit(ESTIMATORS[name](**options))
    return ESTIMATORS[name](**options)


def unwrapped(elbo):
    """The Pyro ELBO inside wrappers that hold it as ``estimator`` or ``elbo``."""
    while hasattr(elbo, "estimator") or hasattr(elbo, "elbo"):
        elbo = getattr(elbo, "estimator", None) or getattr(elbo, "elbo")
    return elbo


def elbo_label(elbo) -> str:
    """A short label for an estimator: its name where it has one, else its class name."""
    if isinstance(elbo, str):
        return elbo
    return type(unwrapped(elbo)).__name__
