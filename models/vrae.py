"""The variational recurrent autoencoder (§6.6.1.1, Fabius & van Amersfoort 2014).

Generative model for sequences x_i of shape (T, D) with a latent z_i in R^K::

    z_i ~ N(0, I_K),    h_0 = tanh(W z_i + b),    h_t = RNN(h_{t-1}, z_i),
    x_{i,t} | z_i ~ p_theta(x_t | h_t)    (a Gaussian per time step, or Bernoulli)

With ``cell="transformer"`` the decoder is non-autoregressive self-attention instead: the query
at step t is the sinusoidal position PE(t) plus a projection of z, and len(hidden) self-attention
blocks over the T queries give the per-step features (§6.6.1.1, "RNNs, or Transformers")::

    q_t = PE(t) + U z_i,    (h_1..h_T) = SelfAttention^L(q_1..q_T),    x_{i,t} | z_i ~ p_theta(x_t | h_t)

In the recurrent decoder, z sets the decoder RNN's initial state and, by default, is also its input at every step
(``feed_latent``); with ``feed_latent=False`` the RNN runs on zero inputs, so the sequence is
generated from the initial state alone, as in Fabius & van Amersfoort. Feeding z keeps the latent
in reach of late time steps: on ECG5000 it trains faster and clusters the heartbeats better. The
encoder (the guide's GRU/LSTM, whose last hidden state gives q(z | x)) lives
in dlvm.guides; :attr:`VRAE.default_encoder` names the cell it pairs with by default.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from .base import sequence_shape
from .decoders import LIKELIHOODS, DecoderModel, Emission, positional_encoding, self_attention_stack
from .options import ModelOptions, option

CELLS = {"gru": nn.GRU, "lstm": nn.LSTM, "transformer": None}


class VRAE(DecoderModel):
    """VRAE for (N, T, D) sequences.

    Args:
        num_features: D.
        window: T, the length :meth:`sample` generates by default (any length can be fitted).
        latent_dim: K.
        hidden: decoder RNN size; several equal entries stack layers, e.g. (64, 64).
        cell: ``gru``, ``lstm`` or ``transformer`` (the self-attention decoder above; its
            default encoder is the Transformer encoder).
        likelihood: per-step emission, see :data:`dlvm.models.decoders.LIKELIHOODS`.
        feed_latent: give z to the decoder RNN at every step (else zero inputs).
    """

    name = "vrae"
    summary = "variational recurrent autoencoder for (N, T, D) sequences (§6.6.1.1)"
    guides = ("amortized",)
    example_shape = (5, 2)
    example_options = {"latent_dim": 2, "hidden": [8]}

    @dataclass(frozen=True)
    class Options(ModelOptions):
        latent_dim: int = option(8, "K, the size of the latent z", low=1)
        hidden: tuple[int, ...] = option((64,), "decoder RNN size; equal entries stack layers, e.g. 64,64",
                                         metavar="SIZES")
        cell: str = option("gru", "recurrent cell (also the default encoder)", choices=tuple(CELLS))
        likelihood: str = option("gaussian", f"per-step likelihood: {', '.join(LIKELIHOODS)}")
        noise_scale: float = option(1.0, "sd of the fixed-variance Gaussian likelihood (gaussian-fixed)", positive=True)
        feed_latent: bool = option(True, "z is the decoder's input at every step (else its initial state only)")

    @classmethod
    def from_options(cls, event_shape, options):
        window, features = sequence_shape(event_shape, cls.name)
        return cls(features, window, options.latent_dim, options.hidden, options.cell, options.likelihood,
                   options.noise_scale, options.feed_latent)

    def __init__(
        self,
        num_features: int,
        window: int,
        latent_dim: int = 8,
        hidden: Sequence[int] = (64,),
        cell: str = "gru",
        likelihood: str = "gaussian",
        noise_scale: float = 1.0,
        feed_latent: bool = True,
    ):
        if cell not in CELLS:
            raise ValueError(f"unknown cell {cell!r}; choose one of: {', '.join(CELLS)}")
        if num_features < 1 or window < 1:
            raise ValueError(f"sequences need T >= 1 steps of D >= 1 features, got T={window}, D={num_features}")
        if latent_dim < 1:
            raise ValueError(f"latent dimension must be at least 1, got {latent_dim}")
        hidden = tuple(hidden)
        if not hidden or min(hidden) < 1 or len(set(hidden)) != 1:
            raise ValueError(f"RNN hidden sizes must be equal positive integers (one per layer), got {list(hidden)}")
        super().__init__()
        self.event_shape = (int(window), int(num_features))
        self.latent_dim = latent_dim
        self.cell = cell
        self.default_encoder = cell
        self.hidden_size, self.layers = hidden[0], len(hidden)
        self.feed_latent = feed_latent
        if cell == "transformer":
            self.query = nn.Linear(latent_dim, self.hidden_size)
            self.attention = self_attention_stack(self.hidden_size, self.layers)
        else:
            states = self.layers * (2 if cell == "lstm" else 1)
            self.init_state = nn.Linear(latent_dim, states * self.hidden_size)
            self.rnn = CELLS[cell](latent_dim if feed_latent else 1, self.hidden_size, num_layers=self.layers,
                                   batch_first=True)
        self.emission = Emission(self.hidden_size, (num_features,), likelihood, noise_scale)

    @property
    def window(self) -> int:
        return self.event_shape[0]

    def _steps(self, x):
        return x.shape[1]

    def features(self, z, steps=None):
        """Decoder outputs (B, T, hidden): the RNN's from the initial state tanh(W z + b), or the
        self-attention blocks' on the queries PE(t) + U z."""
        steps = self.window if steps is None else steps
        batch = z.shape[0]
        if self.cell == "transformer":
            queries = self.query(z).unsqueeze(1) + positional_encoding(steps, self.hidden_size, z.dtype, z.device)
            return self.attention(queries)
        state = torch.tanh(self.init_state(z)).reshape(batch, -1, self.layers, self.hidden_size)
        state = state.permute(1, 2, 0, 3).contiguous()  # (1 or 2, layers, B, H)
        if self.feed_latent:
            inputs = z.unsqueeze(1).expand(batch, steps, self.latent_dim)
        else:
            inputs = z.new_zeros(batch, steps, 1)
        out, _ = self.rnn(inputs, (state[0], state[1]) if self.cell == "lstm" else state[0])
        return out

    def check_shape(self, x):
        """Sequences of any length T with the model's D features: (N, T, D)."""
        if x.ndim != 3 or x.shape[-1] != self.event_shape[1]:
            raise ValueError(
                f"the VRAE needs sequences of shape (N, T, {self.event_shape[1]}), got data of shape {tuple(x.shape)}"
            )
