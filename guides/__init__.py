"""Variational families q(z|x): amortized encoders and exact guides, and the guide registry."""
from __future__ import annotations

from math import prod

from dlvm.models.base import Marginalized

from .encoders import FlattenEncoder, MLPEncoder
from .normal import AmortizedNormalGuide, ExactGuide

GUIDES = {
    "exact": "no latent in the guide: z integrated out exactly (linear-Gaussian models)",
    "amortized": "encoder network -> Normal q(z|x), diagonal or full covariance",
}
ENCODERS = ("linear", "mlp")


def make_encoder(name: str, event_shape: tuple, hidden=(64,), extra_inputs: int = 0):
    """Encoder ``name`` for inputs of ``event_shape`` (plus ``extra_inputs`` mask columns)."""
    width = prod(event_shape) + extra_inputs
    if name == "linear":
        return FlattenEncoder(width)
    if name == "mlp":
        return MLPEncoder(width, hidden)
    raise ValueError(f"unknown encoder {name!r}; choose one of: {', '.join(ENCODERS)}")


def pair(model, guide: str, event_shape: tuple, *, encoder: str = "mlp", hidden=(64,),
         covariance: str = "diagonal", mask_input: bool = False, reparameterized: bool = True):
    """Pair ``model`` with the guide called ``guide``: returns ``(model_to_train, guide)``.

    The exact guide trains :class:`~dlvm.models.base.Marginalized` (z integrated out); every
    other guide trains the model itself.
    """
    if guide == "exact":
        return Marginalized(model), ExactGuide()
    if guide == "amortized":
        extra = prod(event_shape) if mask_input else 0
        net = make_encoder(encoder, event_shape, hidden, extra)
        return model, AmortizedNormalGuide(
            net, model.latent_dim, covariance, mask_input=mask_input, reparameterized=reparameterized
        )
    raise ValueError(f"unknown guide {guide!r}; choose one of: {', '.join(GUIDES)}")


__all__ = [
    "AmortizedNormalGuide", "ENCODERS", "ExactGuide", "FlattenEncoder", "GUIDES", "MLPEncoder",
    "make_encoder", "pair",
]
