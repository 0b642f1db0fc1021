"""The amortized guide of a Gaussian scale mixture (the Student-t factor model): q(u, z | x).

It follows the shape of the exact posterior (models/student_t.py): a Gamma for the precision
scale and, given it, a Normal for the factors whose spread shrinks as u grows::

    q(u_i | x_i) = Gamma(a(x_i), rate b(x_i)),    q(z_i | u_i, x_i) = N(m(x_i), diag s(x_i)^2 / u_i)

with a, b, m, s heads on one encoder (m and s are the heads of the Normal guide, which this guide
extends). Both draws are reparameterised (torch's Gamma has rsample).
"""
from __future__ import annotations

from math import prod

import pyro
import pyro.distributions as dist
from torch import nn
from torch.nn.functional import softplus

from ..models.base import data_plate
from .encoders import make_encoder
from .normal import MIN_SCALE, AmortizedNormalGuide


class AmortizedScaleMixtureGuide(AmortizedNormalGuide):
    """q(u | x) q(z | u, x): the Normal guide's heads for z, scaled by u^-1/2, and a Gamma head for u.

    Args:
        encoder: ``nn.Module`` mapping the (B, D) input to (B, encoder.output_dim) features.
        latent_dim: K, the size of z.
        mask_input: feed the encoder [x with missing entries at 0, mask].
    """

    def __init__(self, encoder: nn.Module, latent_dim: int, mask_input: bool = False):
        super().__init__(encoder, latent_dim, mask_input=mask_input)
        self.gamma_head = nn.Linear(encoder.output_dim, 2)  # shape and rate of q(u | x)
        nn.init.zeros_(self.gamma_head.weight)
        nn.init.constant_(self.gamma_head.bias, 1.0)

    def _parts(self, x, mask):
        """(q(u | x), loc (B, K), scale at u = 1 (B, K))."""
        h = self.features(x, mask)
        shape, rate = (softplus(self.gamma_head(h)) + MIN_SCALE).unbind(-1)
        return dist.Gamma(shape, rate), self.loc_head(h), softplus(self.scale_head(h)) + MIN_SCALE

    def distribution(self, x, mask=None) -> dist.TorchDistribution:
        """q(z | x) with u integrated out: a Student t with 2a degrees of freedom and scale
        s (b / a)^1/2 per coordinate, for q(u | x) = Gamma(a, rate b)."""
        q_u, loc, scale = self._parts(x, mask)
        a, b = q_u.concentration.unsqueeze(-1), q_u.rate.unsqueeze(-1)
        return dist.StudentT(2 * a, loc, scale * (b / a).sqrt()).to_event(1)

    def forward(self, x, mask=None, size=None):
        q_u, loc, scale = self._parts(x, mask)
        with data_plate(x, size):
            u = pyro.sample("u", q_u)
            return pyro.sample("z", dist.Normal(loc, scale * u.rsqrt().unsqueeze(-1)).to_event(1))

    @property
    def covers(self) -> tuple[str, ...]:
        return ("u", "z")


def amortized_scale_mixture(model, event_shape: tuple, options: dict):
    """The amortized guide of a scale-mixture model: (guide, the sites it covers). Options:
    ``encoder`` (default "mlp"), ``hidden`` (default (64,)), ``mask_input``."""
    mask_input = options.get("mask_input", False)
    net = make_encoder(options.get("encoder", "mlp"), event_shape, options.get("hidden", (64,)),
                       prod(event_shape) if mask_input else 0)
    guide = AmortizedScaleMixtureGuide(net, model.latent_dim, mask_input)
    return guide, guide.covers
