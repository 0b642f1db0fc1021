"""Amortized categorical guide q(z_i | x_i) for a discrete local latent (mixture component).

An encoder network maps each row to K logits: q_phi(z_i = k | x_i) = softmax(logits_phi(x_i))_k.
A discrete z has no reparameterisation, so the ELBO gradient for phi is the score-function
(REINFORCE) estimator (§6.4.3.1); ``tracegraph`` reduces its variance with Rao-Blackwellisation
and a baseline, chosen here: a small network b(x_i) fitted to the downstream cost (the default),
or Pyro's decaying average of the cost (kept per row position, so every minibatch must have the
same size: full batch, or a batch size that divides N).
"""
from __future__ import annotations

import pyro
import pyro.distributions as dist
from pyro.nn import PyroModule
from torch import nn

from dlvm.models.base import LocalParams, data_plate

from .encoders import MLPEncoder, encoder_input

BASELINES = ("decaying", "neural", "none")


def baseline_options(baseline: str, net=None, features=None, beta: float = 0.9) -> dict:
    """The ``infer`` dict of a non-reparameterised site for TraceGraph_ELBO's baseline."""
    if baseline == "decaying":
        return {"baseline": {"use_decaying_avg_baseline": True, "baseline_beta": beta}}
    if baseline == "neural":
        return {"baseline": {"nn_baseline": net, "nn_baseline_input": features}}
    return {}


class BaselineNet(nn.Module):
    """b(x): a one-hidden-layer network giving one baseline value per row, (B, input) -> (B,)."""

    def __init__(self, input_dim: int, hidden: int = 16):
        super().__init__()
        self.net = MLPEncoder(input_dim, (hidden,))
        self.out = nn.Linear(hidden, 1)

    def forward(self, x):
        return self.out(self.net(x)).squeeze(-1)


def check_baseline(baseline: str) -> None:
    if baseline not in BASELINES:
        raise ValueError(f"baseline must be one of {', '.join(BASELINES)}, not {baseline!r}")


class AmortizedCategoricalGuide(LocalParams, PyroModule):
    """q(z_i | x_i) = Categorical(softmax(head(encoder(x_i)))), batch shape (B,).

    Args:
        encoder: ``nn.Module`` (B, ...) -> (B, encoder.output_dim).
        num_categories: K.
        input_dim: width of the encoder input (for the neural baseline).
        baseline: ``"decaying"`` (moving average of the cost), ``"neural"`` (a network b(x_i)
            trained alongside) or ``"none"``; used by ``tracegraph`` only.
        mask_input: feed [x, mask] to the encoder (see :func:`encoder_input`).
        site: name of the latent sample site.
    """

    def __init__(self, encoder: nn.Module, num_categories: int, input_dim: int, baseline: str = "neural",
                 mask_input: bool = False, site: str = "z"):
        check_baseline(baseline)
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(encoder.output_dim, num_categories)
        nn.init.zeros_(self.head.weight)  # start at uniform q(z|x): no early overconfidence
        nn.init.zeros_(self.head.bias)
        self.baseline = baseline
        self.baseline_net = BaselineNet(input_dim) if baseline == "neural" else None
        self.mask_input = mask_input
        self.site = site

    def logits(self, x, mask=None):
        """Unnormalised log q(z_i = k | x_i), shape (B, K)."""
        return self.head(self.encoder(encoder_input(x, mask, self.mask_input)))

    def forward(self, x, mask=None, size=None):
        features = encoder_input(x, mask, self.mask_input).flatten(1)
        infer = baseline_options(self.baseline, self.baseline_net, features)
        with data_plate(x, size):
            return pyro.sample(self.site, dist.Categorical(logits=self.logits(x, mask)), infer=infer)
