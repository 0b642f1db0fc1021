"""Amortized structured guide for a hidden Markov chain: q(z_{1:T} | x) = prod_t q(z_t | z_{t-1}, x).

A bidirectional GRU reads the whole sequence, so its state h_t summarises x_{1:T} around step t;
from it a head gives the K x K table of logits of q(z_t = j | z_{t-1} = i, x) (and K logits for
z_1). The guide keeps the chain's dependence on the previous state, as the exact posterior of an
HMM does. Discrete z: the gradient is the score-function estimator (``tracegraph``, with a
baseline, see :mod:`dlvm.guides.categorical`).
"""
from __future__ import annotations

import pyro
import pyro.distributions as dist
from pyro.nn import PyroModule
from pyro.ops.indexing import Vindex
from torch import nn

from ..models.base import LocalParams, data_plate

from .categorical import BaselineNet, baseline_options, check_baseline, plate_scale
from .encoders import encoder_input


class AmortizedMarkovGuide(LocalParams, PyroModule):
    """q(z_t | z_{t-1}, x_{1:T}) from a bidirectional GRU over (N, T, D) sequences.

    Args:
        input_dim: D (2 D with ``mask_input``).
        states: K.
        hidden: GRU state size per direction.
        baseline: ``"decaying"``, ``"neural"`` or ``"none"`` (see :mod:`dlvm.guides.categorical`).
        mask_input: feed [x, mask] to the GRU.
        cell: ``"gru"`` or ``"lstm"``.
    """

    #: the chain z_0 .. z_{T-1}, which the HMM declares as its local latent "z_t"
    covers: tuple[str, ...] = ("z_t",)

    def __init__(self, input_dim: int, states: int, hidden: int = 32, baseline: str = "neural",
                 mask_input: bool = False, cell: str = "gru"):
        check_baseline(baseline)
        if cell not in ("gru", "lstm"):
            raise ValueError(f"cell must be 'gru' or 'lstm', not {cell!r}")
        super().__init__()
        self.states = states
        rnn = nn.GRU if cell == "gru" else nn.LSTM
        self.rnn = rnn(input_dim, hidden, batch_first=True, bidirectional=True)
        self.first_head = nn.Linear(2 * hidden, states)
        self.step_head = nn.Linear(2 * hidden, states * states)
        for head in (self.first_head, self.step_head):
            nn.init.zeros_(head.weight)
            nn.init.zeros_(head.bias)
        self.baseline = baseline
        self.baseline_net = BaselineNet(input_dim) if baseline == "neural" else None
        self.mask_input = mask_input

    def logits(self, x, mask=None):
        """(logits of z_1 (N, K), logits of z_t given z_{t-1} (N, T, K, K); row = previous state)."""
        inputs = encoder_input(x, mask, self.mask_input)
        h, _ = self.rnn(inputs)
        k = self.states
        return self.first_head(h[:, 0]), self.step_head(h).unflatten(-1, (k, k))

    def forward(self, x, mask=None, size=None):
        first, steps = self.logits(x, mask)
        inputs = encoder_input(x, mask, self.mask_input)
        with data_plate(x, size):
            z = None
            for t in pyro.markov(range(x.shape[1])):
                logits = first if z is None else Vindex(steps[:, t])[..., z, :]
                value = None
                if self.baseline == "neural":  # b(x_t), scaled like the cost (N / B rows)
                    value = plate_scale(x, size) * self.baseline_net(inputs[:, t])
                infer = baseline_options(self.baseline, value=value)
                z = pyro.sample(f"z_{t}", dist.Categorical(logits=logits), infer=infer)
