"""Decoder-side building blocks shared by the deep latent models (VAE, VRAE, ...).

:class:`Emission` is the output layer of a decoder network: it maps features h (..., H) to the
observation distribution p(x | z) for each output coordinate. Three likelihoods:

``gaussian``        N(mu(h), diag sigma(h)^2): mean and diagonal variance both network outputs (§6.5)
``gaussian-fixed``  N(mu(h), s^2 I) with a fixed, user-chosen noise scale s
``bernoulli``       Bernoulli(sigmoid(l(h))) for data in [0, 1] (binary images)

:class:`DecoderModel` is the shared generative process p(z) = N(0, I), x | z ~ p_theta(x | z)
(eq. 6.1 with a neural decoder): subclasses only say how z becomes decoder features.
"""
from __future__ import annotations

import math
from math import prod

import pyro
import pyro.distributions as dist
import torch
from torch import nn
from torch.nn.functional import softplus

from .base import LatentVariableModel
from .registry import Registry

LIKELIHOODS: Registry = Registry("likelihood", {
    "gaussian": "Gaussian, mean and diagonal variance both decoder outputs (§6.5)",
    "gaussian-fixed": "Gaussian with a fixed noise scale (option noise_scale, default 1)",
    "bernoulli": "Bernoulli for data in [0, 1] (binary images)",
})
MIN_SCALE = 1e-3  # floor of a learned decoder scale, relative to the data's overall sd


def _inverse_softplus(y: torch.Tensor) -> torch.Tensor:
    return y + torch.log(-torch.expm1(-y))


def check_likelihood(likelihood: str) -> str:
    if likelihood not in LIKELIHOODS:
        raise ValueError(f"unknown likelihood {likelihood!r}; choose one of: {', '.join(LIKELIHOODS)}")
    return likelihood


class Emission(nn.Module):
    """Decoder output layer: features (..., H) -> p(x | z) with batch shape (..., *out_shape).

    Args:
        in_features: H.
        out_shape: shape of the decoded block (the row for a VAE, one time step for a VRAE).
        likelihood: a key of :data:`LIKELIHOODS`.
        noise_scale: s of ``gaussian-fixed``.
    """

    def __init__(self, in_features: int, out_shape: tuple, likelihood: str = "gaussian", noise_scale: float = 1.0):
        super().__init__()
        self.likelihood = check_likelihood(likelihood)
        self.out_shape = tuple(out_shape)
        width = prod(self.out_shape)
        self.loc = nn.Linear(in_features, width)  # mean, or Bernoulli logits
        if likelihood == "gaussian":
            self.scale = nn.Linear(in_features, width)
            nn.init.zeros_(self.scale.weight)
            nn.init.constant_(self.scale.bias, float(_inverse_softplus(torch.tensor(1.0))))
        if likelihood == "gaussian-fixed" and not noise_scale > 0:
            raise ValueError(f"noise_scale must be positive, got {noise_scale}")
        self.register_buffer("noise_scale", torch.tensor(float(noise_scale)))
        self.register_buffer("min_scale", torch.tensor(MIN_SCALE))

    def _shape(self, out: torch.Tensor) -> torch.Tensor:
        return out.reshape(out.shape[:-1] + self.out_shape)

    def forward(self, h: torch.Tensor, offset: torch.Tensor | None = None) -> dist.TorchDistribution:
        """p(x | z) as an elementwise distribution of batch shape (..., *out_shape).

        ``offset`` (broadcastable to the mean) is added to the network's mean (or logits), for
        decoders whose mean is a sum of parts (TimeVAE's interpretable blocks).
        """
        loc = self._shape(self.loc(h))
        if offset is not None:
            loc = loc + offset
        if self.likelihood == "bernoulli":
            return dist.Bernoulli(logits=loc, validate_args=False)
        if self.likelihood == "gaussian":
            scale = softplus(self._shape(self.scale(h))) + self.min_scale
        else:
            scale = self.noise_scale.expand(loc.shape)
        return dist.Normal(loc, scale)

    def check(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> None:
        """One-line ValueError for data the likelihood cannot score."""
        if self.likelihood != "bernoulli":
            return
        seen = x if mask is None else x[mask]
        if seen.numel() and (seen.min() < 0 or seen.max() > 1):
            raise ValueError(
                f"the bernoulli likelihood needs data in [0, 1], found values from {float(seen.min()):.4g} "
                f"to {float(seen.max()):.4g}; rescale the data or use the gaussian likelihood"
            )

    @torch.no_grad()
    def initialize(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> None:
        """Start the output biases at the data: mean (or logit of the mean) and sd per coordinate.

        ``x`` has shape (M, *out_shape): every leading row is one draw of the decoded block.
        """
        x = x.reshape((-1,) + self.out_shape)
        m = torch.ones_like(x) if mask is None else mask.reshape(x.shape).to(x.dtype)
        count = m.sum(0).clamp(min=1)
        mean = (x * m).sum(0) / count
        if self.likelihood == "bernoulli":
            p = mean.clamp(1e-3, 1 - 1e-3)
            self.loc.bias.copy_((p.log() - (-p).log1p()).flatten())
            return
        self.loc.bias.copy_(mean.flatten())
        if self.likelihood == "gaussian":
            var = (((x - mean) ** 2) * m).sum(0) / count
            overall = float((var.mean()).sqrt())
            floor = MIN_SCALE * (overall if overall > 0 else 1.0)
            self.min_scale.fill_(floor)
            sd = var.sqrt().clamp(min=2 * floor)
            self.scale.bias.copy_(_inverse_softplus(sd - floor).flatten())


def strided_length(window: int, layers: int, stride: int = 2) -> int:
    """Steps left after ``layers`` convolutions of stride s with 'same' padding: ceil(T / s^layers)."""
    for _ in range(layers):
        window = -(-window // stride)
    return window


def check_conv_window(window: int, layers: int, stride: int = 2) -> None:
    """One-line ValueError unless every one of ``layers`` stride-s layers has at least s steps to
    downsample, i.e. T >= s^layers."""
    need = stride ** layers
    if window < need:
        raise ValueError(
            f"windows of {window} steps are too short for {layers} stride-{stride} convolution layers: "
            f"need at least {need} steps (use fewer --hidden layers or longer windows)"
        )


def positional_encoding(steps: int, width: int, dtype=torch.float32, device=None) -> torch.Tensor:
    """Sinusoidal positions (Vaswani et al. 2017), (T, W): PE[t, 2i] = sin(t / 10000^(2i/W)),
    PE[t, 2i+1] = cos(t / 10000^(2i/W))."""
    t = torch.arange(steps, dtype=dtype, device=device).unsqueeze(1)
    rate = torch.exp(-math.log(10000.0) * torch.arange(0, width, 2, dtype=dtype, device=device) / width)
    pe = torch.zeros(steps, width, dtype=dtype, device=device)
    pe[:, 0::2] = torch.sin(t * rate)
    pe[:, 1::2] = torch.cos(t * rate)[:, : width // 2]
    return pe


def attention_heads(width: int) -> int:
    """The most heads (4, 2 or 1) that divide the model width."""
    return next(h for h in (4, 2, 1) if width % h == 0)


def self_attention_stack(width: int, layers: int) -> nn.TransformerEncoder:
    """``layers`` pre-norm self-attention blocks of width W (feed-forward 2 W, no dropout)."""
    block = nn.TransformerEncoderLayer(width, attention_heads(width), 2 * width, dropout=0.0,
                                       batch_first=True, norm_first=True)
    return nn.TransformerEncoder(block, layers, enable_nested_tensor=False)


def grid_coordinates(size: int, dtype=torch.float32, device=None) -> torch.Tensor:
    """The latent values of a manifold grid's cells along one axis, ascending (size,): standard
    normal quantiles of the evenly spaced probabilities (i + 1/2) / size."""
    probs = torch.linspace(0.5 / size, 1 - 0.5 / size, size, dtype=dtype, device=device)
    return math.sqrt(2) * torch.erfinv(2 * probs - 1)


class DecoderModel(LatentVariableModel):
    """z_i ~ N(0, I_K), x_i | z_i ~ p_theta(x | z_i) (eq. 6.1) with a neural decoder.

    Subclasses set ``event_shape`` (shape of one row), ``latent_dim`` and ``emission`` and define
    :meth:`features` (z -> decoder features). Rows may be masked (``mask`` False = missing).
    The reconstruction and encoding helpers take the trained guide, which holds the encoder.
    """

    latent_kind = "continuous"
    can_sample = True
    event_shape: tuple = ()
    latent_dim: int = 2
    #: whether :meth:`sample` adds the observation noise by default (else it returns E[x | z])
    sample_noise: bool = True

    def features(self, z: torch.Tensor, steps: int | None) -> torch.Tensor:
        raise NotImplementedError

    def likelihood(self, z: torch.Tensor, steps: int | None = None) -> dist.TorchDistribution:
        """p(x | z), batch shape (B, *event_shape), elementwise."""
        return self.emission(self.features(z, steps))

    def _steps(self, x: torch.Tensor | None) -> int | None:
        return None

    def check_shape(self, x: torch.Tensor) -> None:
        """One-line ValueError unless the rows of ``x`` have the model's event shape."""
        if tuple(x.shape[1:]) != tuple(self.event_shape):
            raise ValueError(
                f"{type(self).__name__} expects rows of shape {tuple(self.event_shape)}, got data of shape {tuple(x.shape)}"
            )

    def model(self, x, mask=None, size=None):
        """Sites ``z`` (B, K) and ``x`` (B, *event_shape) in the plate ``data``."""
        self.check_shape(x)
        if not torch.jit.is_tracing():
            self.emission.check(x, mask)
        with self.data_plate(x, size):
            z = pyro.sample("z", dist.Normal(x.new_zeros(self.latent_dim), 1.0).to_event(1))
            px = self.likelihood(z, self._steps(x))
            if mask is not None:
                px = px.mask(mask)
            return pyro.sample("x", px.to_event(len(self.event_shape)), obs=x)

    @torch.no_grad()
    def initialize(self, x, mask=None) -> None:
        """Check the data against the likelihood and start the decoder's output at the data."""
        self.check_shape(x)
        self.emission.check(x, mask)
        self.emission.initialize(x, mask)

    @torch.no_grad()
    def decode(self, z: torch.Tensor, steps: int | None = None) -> torch.Tensor:
        """E[x | z] for latents z (B, K): shape (B, *event_shape)."""
        return self.likelihood(z, steps).mean

    @torch.no_grad()
    def sample_latent(self, n: int) -> torch.Tensor:
        """n latents (n, K) for :meth:`sample`: the prior N(0, I)."""
        return torch.randn(n, self.latent_dim, device=self.device, dtype=self.dtype)

    @torch.no_grad()
    def sample(self, n: int, steps: int | None = None, noise: bool | None = None) -> torch.Tensor:
        """n new rows x ~ p(x) (z from the prior, then x | z); ``noise=False`` returns E[x | z].

        ``noise`` defaults to the class's :attr:`sample_noise`.
        """
        z = self.sample_latent(n)
        if not (self.sample_noise if noise is None else noise):
            return self.decode(z, steps)
        return self.likelihood(z, steps).sample()

    @torch.no_grad()
    def reconstruct(self, x, guide, mask=None) -> torch.Tensor:
        """E[x | z = E_q[z | x]]: the decoded posterior mean of each row, x's shape."""
        return self.decode(guide.encode(x, mask), self._steps(x))

    @torch.no_grad()
    def traverse(self, dim: int, values, base: torch.Tensor | None = None, steps: int | None = None):
        """Latent traversal: decode ``base`` (default 0) with coordinate ``dim`` set to each value.

        Returns (len(values), *event_shape): how one latent direction moves the decoded data.
        """
        if not 0 <= dim < self.latent_dim:
            raise ValueError(f"latent dimension {dim} out of range 0..{self.latent_dim - 1}")
        values = torch.as_tensor(values, dtype=self.dtype, device=self.device).reshape(-1)
        z = (torch.zeros(self.latent_dim, dtype=self.dtype, device=self.device) if base is None
             else torch.as_tensor(base, dtype=self.dtype, device=self.device)).repeat(len(values), 1)
        z[:, dim] = values
        return self.decode(z, steps)

    @torch.no_grad()
    def grid(self, size: int = 15, steps: int | None = None) -> torch.Tensor:
        """The learned manifold of a 2-D latent (Figure 6.7): decoded means on a size x size grid.

        Grid points are the normal quantiles of evenly spaced probabilities, so the grid covers
        the prior's mass; result (size, size, *event_shape), row index = z_2 (top = high).
        """
        if self.latent_dim != 2:
            raise ValueError(f"the manifold grid needs a 2-D latent, this model has {self.latent_dim}")
        q = grid_coordinates(size, dtype=self.dtype, device=self.device)
        z2, z1 = torch.meshgrid(q.flip(0), q, indexing="ij")
        z = torch.stack([z1.reshape(-1), z2.reshape(-1)], -1)
        return self.decode(z, steps).reshape((size, size) + tuple(self.event_shape))
