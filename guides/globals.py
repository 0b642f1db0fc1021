"""Guides on global latents, and the composition "guide on globals x guide on locals".

A Bayesian model (one with ``PyroSample`` priors on its globals, e.g. Dirichlet mixture weights)
needs q(theta) besides q(z | x). :func:`with_globals` adds a mean-field Normal guide in
unconstrained space (Pyro's AutoNormal) on every sample site outside the ``"data"`` plate, in
front of any local guide; for a maximum-likelihood model it returns the local guide unchanged.
"""
from __future__ import annotations

import pyro.poutine as poutine
from pyro.infer.autoguide import AutoNormal
from torch import nn

from ..models.base import LocalParams, has_global_latents, init_to_model_start, local_params
from ..models.sites import is_local

from .normal import ExactGuide


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
            poutine.block(model, hide_fn=is_local), init_loc_fn=init_to_model_start(model), init_scale=init_scale
        )
    return GlobalLocalGuide(global_guide, local_guide)
