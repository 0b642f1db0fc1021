"""Predicates on the sites of a Pyro trace, in one place for guides, the engine, evaluation,
estimator comparisons and diagnostics."""
from __future__ import annotations

from pyro.poutine.util import site_is_subsample


def is_latent(site) -> bool:
    """A sample site that is drawn (not observed), other than a plate's subsample index."""
    return site["type"] == "sample" and not site["is_observed"] and not site_is_subsample(site)


def is_observed(site) -> bool:
    return site["type"] == "sample" and site["is_observed"] and not site_is_subsample(site)


def in_plate(site, plate: str) -> bool:
    """Whether ``site`` lies inside the plate called ``plate``."""
    return any(frame.name == plate for frame in site["cond_indep_stack"])


def is_local(site) -> bool:
    """A site inside the ``"data"`` plate (a local latent or an observation)."""
    return in_plate(site, "data")


def is_enumerated(site) -> bool:
    """A latent site marked for parallel enumeration (summed out by TraceEnum_ELBO)."""
    return is_latent(site) and site["infer"].get("enumerate") == "parallel"


def latent_sites(trace) -> dict:
    """The latent sample sites of a trace ({name: site}) other than an autoguide's auxiliary ones."""
    return {name: site for name, site in trace.nodes.items()
            if is_latent(site) and not site["infer"].get("is_auxiliary")}


def observed_sites(trace, drawn=()) -> dict:
    """The observed sample sites of a trace ({name: site}), other than the ``drawn`` latents it
    was conditioned on, ``pyro.deterministic`` values and ``pyro.factor`` terms."""
    return {name: site for name, site in trace.nodes.items()
            if is_observed(site) and name not in drawn and not site["infer"].get("_deterministic")
            and not site["infer"].get("is_auxiliary")}


def deterministic_sites(trace) -> dict:
    """The ``pyro.deterministic`` sites of a trace (functions of the latents)."""
    return {name: site for name, site in trace.nodes.items()
            if site["type"] == "sample" and site["infer"].get("_deterministic")}


def enumerated_sites(model_trace, guide_trace) -> list[str]:
    """Latent sites of the model marked for parallel enumeration that the guide does not sample:
    under ``traceenum`` they are summed out, not sampled."""
    return [name for name, site in model_trace.nodes.items()
            if is_enumerated(site) and name not in guide_trace.nodes]
