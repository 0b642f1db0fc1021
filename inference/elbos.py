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

``jit-trace``, ``jit-tracegraph`` and ``jit-traceenum`` compile the loss with the PyTorch JIT.
(``jit-meanfield`` is left out on purpose: in pyro-ppl 1.9 it re-traces at every step.)
"""
from __future__ import annotations

import pyro.infer as infer

_ESTIMATORS = {
    "trace": infer.Trace_ELBO,
    "tracegraph": infer.TraceGraph_ELBO,
    "traceenum": infer.TraceEnum_ELBO,
    "meanfield": infer.TraceMeanField_ELBO,
    "renyi": infer.RenyiELBO,
    "jit-trace": infer.JitTrace_ELBO,
    "jit-tracegraph": infer.JitTraceGraph_ELBO,
    "jit-traceenum": infer.JitTraceEnum_ELBO,
}

ELBO_NAMES: tuple[str, ...] = tuple(_ESTIMATORS)


def make_elbo(
    name: str, *, num_particles: int = 1, max_plate_nesting: int = 1, alpha: float = 0.0
) -> infer.ELBO:
    """Build the ELBO estimator called ``name`` (see the module docstring).

    ``max_plate_nesting`` comes from the model (``model.max_plate_nesting``) so that
    enumeration dimensions never collide with its plates; ``alpha`` is used by ``renyi`` only.
    """
    if name not in _ESTIMATORS:
        raise ValueError(f"unknown ELBO {name!r}; choose one of: {', '.join(ELBO_NAMES)}")
    if num_particles < 1:
        raise ValueError(f"num_particles must be at least 1, got {num_particles}")
    options = dict(num_particles=num_particles, max_plate_nesting=max_plate_nesting)
    if name == "renyi":
        if alpha == 1.0:
            raise ValueError("renyi alpha must differ from 1 (alpha = 1 is the plain ELBO: use 'trace')")
        options["alpha"] = alpha
    if name.startswith("jit-"):
        options["ignore_jit_warnings"] = True
    return _ESTIMATORS[name](**options)
