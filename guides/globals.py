"""Guides on global latents, and the composition "guide on globals x guide on locals".

A Bayesian model (one with ``PyroSample`` priors on its globals, e.g. Dirichlet mixture weights)
needs q(theta) besides q(z | x). :func:`with_globals` adds a mean-field Normal guide in
unconstrained space (Pyro's AutoNormal) on every sample site outside the ``"data"`` plate, in
front of any local guide; for a maximum-likelihood model it returns the local guide unchanged.
"""
from __future__ import annotations

import pyro.poutine as poutine
from pyro.infer.autoguide import AutoNormal
from pyro.infer.autoguide.initialization import init_to_median
from torch import nn

from dlvm.models.base import LocalParams, has_global_latents, local_params

from .normal import ExactGuide


def is_local(msg) -> bool:
    """A site inside the ``"data"`` plate (a local latent or an observation)."""
    return any(frame.name == "data" for frame in msg["cond_indep_stack"])


def _start_from_model(model):
    """init_loc_fn: the model's data-dependent start (``model.initial_globals``, set by its
    ``initialize``: site name, or its last dotted parts, -> value), else the prior median."""

    def init(site):
        for key, value in getattr(model, "initial_globals", {}).items():
            if site["name"] == key or site["name"].endswith("." + key):
                return value.to(site["value"].dtype) if "value" in site and site["value"] is not None else value
        return init_to_median(site)

    return init


class GlobalLocalGuide(LocalParams, nn.Module):
    """q(theta) q(z | x): the global guide runs first, then the local one (if any).

    A plain ``nn.Module``: each part stays a top-level PyroModule with its own site names.
    """

    def __init__(self, global_guide, local_guide=None):
        super().__init__()
        self.global_guide = global_guide
        self.local_guide = local_guide

    def forward(self, x, mask=None, size=None):
        self.global_guide(x, mask, size)
        if self.local_guide is not None:
            return self.local_guide(x, mask, size)
        return None


def with_globals(model, local_guide=None, init_scale: float = 0.05):
    """``local_guide`` preceded by an AutoNormal guide on the model's global latents, if it has any.

    Returns ``local_guide`` itself for a model without global latents (and an empty guide when
    that is None too).
    """
    if not has_global_latents(model):
        return local_guide if local_guide is not None else ExactGuide()
    with local_params():
        global_guide = AutoNormal(
            poutine.block(model, hide_fn=is_local), init_loc_fn=_start_from_model(model), init_scale=init_scale
        )
    return GlobalLocalGuide(global_guide, local_guide)
