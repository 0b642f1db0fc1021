"""The variational autoencoder (§6.5, Kingma 2013).

Generative model, for rows x_i of any shape and latents z_i in R^K::

    z_i ~ N(0, I_K),    x_i | z_i ~ p_theta(x | z_i)

with an MLP decoder whose output layer is an :class:`~dlvm.models.decoders.Emission`: a Gaussian
with mean and diagonal variance both network outputs (as in §6.5), a fixed-variance Gaussian, or
a Bernoulli for binary images. The encoder q_phi(z | x) is the guide's (dlvm.guides, "amortized").
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from math import prod

from torch import nn

from .decoders import LIKELIHOODS, DecoderModel, Emission
from .options import ModelOptions, option


class VAE(DecoderModel):
    """VAE with an MLP decoder z -> hidden -> p(x | z).

    Args:
        event_shape: shape of one row, e.g. (64,) or (8, 8).
        latent_dim: K.
        hidden: decoder hidden layer sizes (the guide's encoder has its own).
        likelihood: ``gaussian``, ``gaussian-fixed`` or ``bernoulli``.
        noise_scale: the fixed sd of ``gaussian-fixed``.
    """

    name = "vae"
    summary = "variational autoencoder, MLP decoder (§6.5)"
    guides = ("amortized",)
    example_options = {"latent_dim": 2, "hidden": [8]}

    @dataclass(frozen=True)
    class Options(ModelOptions):
        latent_dim: int = option(2, "K, the size of the latent z", low=1)
        hidden: tuple[int, ...] = option((64,), "decoder hidden layer sizes, e.g. 64,64", metavar="SIZES")
        likelihood: str = option("gaussian", f"decoder likelihood: {', '.join(LIKELIHOODS)}")
        noise_scale: float = option(1.0, "sd of the fixed-variance Gaussian likelihood (gaussian-fixed)", positive=True)

    @classmethod
    def from_options(cls, event_shape, options):
        return cls(event_shape, options.latent_dim, options.hidden, options.likelihood, options.noise_scale)

    def __init__(
        self,
        event_shape: Sequence[int],
        latent_dim: int = 2,
        hidden: Sequence[int] = (64,),
        likelihood: str = "gaussian",
        noise_scale: float = 1.0,
    ):
        event_shape = tuple(int(s) for s in event_shape)
        if not event_shape or min(event_shape) < 1:
            raise ValueError(f"a VAE needs rows with at least one value, got row shape {event_shape}")
        if latent_dim < 1:
            raise ValueError(f"latent dimension must be at least 1, got {latent_dim}")
        if not hidden or min(hidden) < 1:
            raise ValueError(f"hidden layer sizes must be positive integers, got {list(hidden)}")
        super().__init__()
        self.event_shape = event_shape
        self.latent_dim = latent_dim
        self.hidden = tuple(hidden)
        layers: list[nn.Module] = []
        width = latent_dim
        for size in hidden:
            layers += [nn.Linear(width, size), nn.Softplus()]
            width = size
        self.decoder = nn.Sequential(*layers)
        self.emission = Emission(width, event_shape, likelihood, noise_scale)

    def features(self, z, steps=None):
        """Decoder features (B, hidden[-1]) of latents z (B, K)."""
        return self.decoder(z)

    @property
    def num_features(self) -> int:
        return prod(self.event_shape)
