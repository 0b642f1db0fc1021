"""Encoder networks: plain ``nn.Module``s that map a batch of inputs to a feature vector.

An encoder has an ``output_dim`` attribute; the amortized guides put heads on top of it that
give the parameters of q(z | x) (§6.4.2.2, amortized inference).
"""
from __future__ import annotations

from collections.abc import Sequence
from math import prod

import torch
from torch import nn

from ..models.decoders import check_conv_window, positional_encoding, self_attention_stack, strided_length
from ..models.registry import Registry


def encoder_input(x: torch.Tensor, mask: torch.Tensor | None, mask_input: bool) -> torch.Tensor:
    """What an amortized guide feeds its encoder: x, or [x with missing entries at 0, mask]
    (last dim doubled) when ``mask_input`` is set, so the guide sees which entries are missing."""
    if not mask_input:
        return x
    mask = torch.ones_like(x, dtype=torch.bool) if mask is None else mask
    return torch.cat([torch.where(mask, x, 0.0), mask.to(x.dtype)], dim=-1)


class FlattenEncoder(nn.Module):
    """The identity on flattened rows: heads on top of it make q(z|x) linear in x.

    Input (B, *event_shape) -> output (B, prod(event_shape)).
    """

    def __init__(self, input_dim: int):
        super().__init__()
        self.output_dim = input_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)


class MLPEncoder(nn.Module):
    """Multilayer perceptron on flattened rows: (B, *event_shape) -> (B, hidden[-1])."""

    def __init__(self, input_dim: int, hidden: Sequence[int] = (64,), activation=nn.Softplus):
        super().__init__()
        if not hidden or min(hidden) < 1:
            raise ValueError(f"hidden layer sizes must be positive integers, got {list(hidden)}")
        layers: list[nn.Module] = [nn.Flatten()]
        width = input_dim
        for size in hidden:
            layers += [nn.Linear(width, size), activation()]
            width = size
        self.net = nn.Sequential(*layers)
        self.output_dim = width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def _as_sequence(x: torch.Tensor) -> torch.Tensor:
    """(B, T, D) stays; a table (B, T) is read as T steps of one feature, (B, T, 1)."""
    if x.ndim == 2:
        return x.unsqueeze(-1)
    if x.ndim != 3:
        raise ValueError(f"a sequence encoder needs input (B, T, D) or (B, T), got shape {tuple(x.shape)}")
    return x


class RNNEncoder(nn.Module):
    """GRU or LSTM over the time steps; the feature is the last hidden state (§6.6.1.1).

    Input (B, T, D) (or (B, T), one feature) of any length T -> output (B, H), or (B, 2H) when
    bidirectional (last state of the forward pass, and of the backward pass, which ends at t = 1).
    ``hidden`` gives the layer sizes, which must be equal: (64,) is one layer, (64, 64) two.
    """

    def __init__(self, input_size: int, hidden: Sequence[int] = (64,), cell: str = "gru", bidirectional: bool = False):
        super().__init__()
        hidden = tuple(hidden)
        if not hidden or min(hidden) < 1 or len(set(hidden)) != 1:
            raise ValueError(f"RNN hidden sizes must be equal positive integers (one per layer), got {list(hidden)}")
        rnns = {"gru": nn.GRU, "lstm": nn.LSTM}
        if cell not in rnns:
            raise ValueError(f"unknown cell {cell!r}; choose one of: {', '.join(rnns)}")
        self.cell = cell
        self.rnn = rnns[cell](
            input_size, hidden[0], num_layers=len(hidden), batch_first=True, bidirectional=bidirectional
        )
        self.directions = 2 if bidirectional else 1
        self.output_dim = hidden[0] * self.directions

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, state = self.rnn(_as_sequence(x))
        if self.cell == "lstm":
            state = state[0]
        # state: (layers * directions, B, H); the top layer's states are the last `directions`
        return state[-self.directions:].transpose(0, 1).reshape(x.shape[0], -1)


class ConvEncoder(nn.Module):
    """1-D convolutions over time: (B, T, D) -> (B, output_dim).

    Each layer is Conv1d(kernel k, 'same' padding, stride s) + activation. With stride 1 (the
    default) the feature is the average over time, so any length T works. With ``window`` T the
    feature is the flattened last layer instead, (B, hidden[-1] * ceil(T / s^layers)): TimeVAE's
    encoder (§6.6.1.2) is stride 2, kernel 3, ReLU, flattened; inputs must then have T steps.
    """

    def __init__(self, input_size: int, hidden: Sequence[int] = (64,), kernel_size: int = 5,
                 activation=nn.Softplus, stride: int = 1, window: int | None = None):
        super().__init__()
        if not hidden or min(hidden) < 1:
            raise ValueError(f"hidden channel sizes must be positive integers, got {list(hidden)}")
        layers: list[nn.Module] = []
        width = input_size
        for size in hidden:
            layers += [nn.Conv1d(width, size, kernel_size, stride=stride, padding=kernel_size // 2), activation()]
            width = size
        self.net = nn.Sequential(*layers)
        self.window = window
        if window is None:
            self.output_dim = width
        else:
            check_conv_window(window, len(hidden), stride)
            self.output_dim = width * strided_length(window, len(hidden), stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = _as_sequence(x)
        if self.window is None:
            return self.net(x.transpose(1, 2)).mean(-1)
        if x.shape[1] != self.window:
            raise ValueError(f"this encoder reads windows of {self.window} steps, got {x.shape[1]}")
        return self.net(x.transpose(1, 2)).flatten(1)


class TransformerEncoder(nn.Module):
    """Self-attention over the time steps, mean-pooled (§6.6.1.1): (B, T, D) -> (B, W).

    x_t is projected to width W = hidden[0], sinusoidal positions are added, and len(hidden)
    self-attention blocks run over all steps; the feature is the mean over t of the last block's
    outputs, so any length T works.
    """

    def __init__(self, input_size: int, hidden: Sequence[int] = (64,)):
        super().__init__()
        if not hidden or min(hidden) < 2:
            raise ValueError(f"a Transformer encoder needs widths of at least 2, got {list(hidden)}")
        self.width = int(hidden[0])
        self.project = nn.Linear(input_size, self.width)
        self.blocks = self_attention_stack(self.width, len(hidden))
        self.output_dim = self.width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = _as_sequence(x)
        h = self.project(x) + positional_encoding(x.shape[1], self.width, x.dtype, x.device)
        return self.blocks(h).mean(1)


def step_features(event_shape: tuple, extra_inputs: int = 0) -> int:
    """Features per time step a sequence encoder sees for rows of ``event_shape`` (T, D) or (T,).

    ``extra_inputs`` (a mask of the row's shape, concatenated on the last axis) adds D per step.
    """
    if len(event_shape) not in (1, 2):
        raise ValueError(f"a sequence encoder needs rows of shape (T, D) or (T,), got {tuple(event_shape)}")
    per_step = event_shape[-1] if len(event_shape) == 2 else 1
    return per_step + (per_step if extra_inputs and len(event_shape) == 2 else 0)


#: encoder name -> builder(event_shape, hidden, extra_inputs) -> nn.Module with .output_dim
ENCODERS: Registry = Registry("encoder", {
    "linear": lambda shape, hidden, extra: FlattenEncoder(prod(shape) + extra),
    "mlp": lambda shape, hidden, extra: MLPEncoder(prod(shape) + extra, hidden),
    "gru": lambda shape, hidden, extra: RNNEncoder(step_features(shape, extra), hidden, "gru"),
    "lstm": lambda shape, hidden, extra: RNNEncoder(step_features(shape, extra), hidden, "lstm"),
    "bigru": lambda shape, hidden, extra: RNNEncoder(step_features(shape, extra), hidden, "gru", True),
    "bilstm": lambda shape, hidden, extra: RNNEncoder(step_features(shape, extra), hidden, "lstm", True),
    "conv": lambda shape, hidden, extra: ConvEncoder(step_features(shape, extra), hidden),
    "transformer": lambda shape, hidden, extra: TransformerEncoder(step_features(shape, extra), hidden),
    "conv-stride2": lambda shape, hidden, extra: ConvEncoder(
        step_features(shape, extra), hidden, 3, nn.ReLU, stride=2, window=shape[0]),
})


def make_encoder(name: str, event_shape: tuple, hidden=(64,), extra_inputs: int = 0):
    """Encoder ``name`` for inputs of ``event_shape`` (plus ``extra_inputs`` mask columns)."""
    return ENCODERS.lookup(name)(tuple(event_shape), tuple(hidden), extra_inputs)
