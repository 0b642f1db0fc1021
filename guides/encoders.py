"""Encoder networks: plain ``nn.Module``s that map a batch of inputs to a feature vector.

An encoder has an ``output_dim`` attribute; the amortized guides put heads on top of it that
give the parameters of q(z | x) (§6.4.2.2, amortized inference).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


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
