"""Score-function baselines for any guide, added from outside (§6.4.3.1).

A local latent that the guide samples without reparameterisation (a discrete z, or a Normal z with
``reparameterized=False``) gets the score-function (REINFORCE) gradient. ``tracegraph`` subtracts
a baseline b from the site's downstream cost, which leaves the gradient unbiased and can shrink its
variance. :class:`WithBaseline` wraps any guide and writes Pyro's baseline options into the
``infer`` dict of each such site in the ``"data"`` plate, so a guide needs no baseline code of its
own (the amortized categorical and Markov guides, guides/categorical.py and guides/markov.py, still
carry one: a neural baseline on their own encoder features, cheaper than a second network):

* ``"decaying"``: a moving average of the cost, kept per row position (every minibatch must then
  have the same size). Pyro keeps that average in its parameter store, outside the modules: an
  ELBO wrapped by :class:`dlvm.inference.estimators.ScopedELBO` keeps it private to one estimator.
* ``"neural"``: a small network b(x_i) (one value per row), fitted alongside by the squared error
  to the cost; its parameters live in this wrapper, so ``guide.parameters()`` trains them.
* ``"none"``: the plain score-function estimator.
"""
from __future__ import annotations

from math import prod

import pyro.poutine as poutine
from pyro.nn import PyroModule

from ..models.base import LocalParams
from ..models.sites import is_local

from .categorical import BaselineNet, baseline_options, check_baseline


def needs_score_function(msg) -> bool:
    """A latent sample site in the ``"data"`` plate whose distribution has no rsample."""
    return (
        msg["type"] == "sample" and not msg["is_observed"]
        and is_local(msg)
        and not getattr(msg["fn"], "has_rsample", False)
    )


class WithBaseline(LocalParams, PyroModule):
    """``guide`` with the score-function baseline ``baseline`` on its non-reparameterised sites.

    Args:
        guide: any dlvm guide ``(x, mask=None, size=None)``.
        event_shape: shape of one row (the neural baseline reads the flattened row).
        baseline: ``"decaying"``, ``"neural"`` or ``"none"``.
        beta: decay of the moving average (Pyro's ``baseline_beta``).
    """

    def __init__(self, guide, event_shape: tuple, baseline: str = "decaying", beta: float = 0.9):
        check_baseline(baseline)
        super().__init__()
        self.guide = guide
        self.baseline = baseline
        self.beta = beta
        self.baseline_net = BaselineNet(prod(event_shape)) if baseline == "neural" else None

    def forward(self, x, mask=None, size=None):
        features = x.flatten(1)
        options = baseline_options(self.baseline, self.baseline_net, features, self.beta)

        def config(msg):
            return options if needs_score_function(msg) else {}

        return poutine.infer_config(self.guide, config_fn=config)(x, mask, size)
