"""Amortized structured guide for a hidden Markov chain: q(z_{1:T} | x) = prod_t q(z_t | z_{t-1}, x).

A bidirectional GRU reads the sequence, so its state h_t summarises x around step t. The guide
keeps the chain's dependence on the previous state, as the exact posterior of an HMM does:
p(z_t = j | z_{t-1} = i, x_{1:T}) is proportional to A_ij p(x_t | j) beta_t(j), beta_t the backward
message. Structured (the default with a maximum-likelihood model): the logits are the model's own
factors log A_ij + log p(x_t | j) (inputs: no gradient flows through them into the model) plus a
learned log message m_t(j) from the GRU, which reads the standardised x_t, the model's normalised
emission log-densities and log A (a structured inference network in the sense of Krishnan et al.,
2017). Unstructured: a head gives the K x K table of logits from h_t. Discrete z: the gradient is
the score-function estimator (``tracegraph``, with a baseline).

Why it was slow, and the form that is not. Written with one sample site per step, TraceGraph_ELBO
builds its dependency graph and a surrogate term per site, in Python: T sites per step of the
optimizer (13 s per step at T = 200). Here the whole chain is one site ``z`` of shape (N, T)
drawn from :class:`~dlvm.models.hmm.MarkovChain` (sampled by a parallel prefix scan, log-density
summed over the transitions in one expression), and the model observes the same joint density
with one chain site and one emission factor (``GaussianHMM.joint_chain``). The estimator is the
same score-function gradient, with the whole sequence's cost log p(x, z) - log q(z) as the
reward of the chain (no per-step Rao-Blackwellisation: every later step depends on z_t anyway).
Long sequences are read by the GRU in overlapping windows (:meth:`AmortizedMarkovGuide.states_of`).

Why it needs its structure and a warm start. From a k-means start the posterior changes entirely
while the model trains (labels that switch every few steps -> regimes that last); an unstructured
guide trained by a score-function gradient on one long chain cannot follow it and collapses (the
ELBO on the S&P series fell from -13,390 to -17,790 in 50 steps). The structured guide follows
the model's transitions and emissions by construction and learns only the messages. When the model
is initialised (its k-means++ start, the one EM starts from) the guide (1) standardises its inputs
(asinh), (2) fits its logits to the exact pairwise posterior p(z_{t-1}, z_t | x) by a few L-BFGS
iterations (cross-entropy = KL(p || q) of the whole chain up to a constant); its baseline is
log p(x) from the model's factors plus a learned residual sum_t b(x_t) that starts at 0. With q
equal to the posterior the reward log p(x, z) - log q(z) equals log p(x) for every path: the
score-function term vanishes in expectation and almost in variance, and the model's gradient is
the exact one (Fisher's identity). (An unstructured guide's b(x_t) is fitted to the one-step
predictive log-likelihoods log p(x_t | x_{1:t-1}), which sum to log p(x).)

Default start and schedule. From the k-means++ start 100 Adam steps at 1e-2 did not reach EM's
optimum on the S&P series even on the exact marginal (0.04 nats per step short), and the guide's
fit lagged it (0.08 short; collapse near step 360). The warm start now first runs
``CHAIN_EM_START_ITERATIONS`` closed-form EM iterations (:func:`~dlvm.guides.categorical.em_start`),
then fits the guide to the posterior there, and declares a step schedule to the engine
(``step_schedule``, a :class:`~dlvm.inference.optim.StepSchedule`: the gradients of the s-th
update times ``STEP_DECAY ** s``), since at EM's optimum one chain's score-function gradient is
mostly noise that Adam turns into full-size steps: 100 steps at 1e-2 lost 0.01-0.06 nats per step
on the S&P series without it, with the guide frozen as well. Shrinking the gradients shrinks
Adam's steps, to ~0.4 of the learning rate by step 30 and ~0.02 by step 100 (about 25 full-size
steps in all).
"""
from __future__ import annotations

import pyro
import torch
from pyro.nn import PyroModule
from torch import nn

from ..inference.optim import StepSchedule
from ..models.base import LocalParams, data_plate
from ..models.hmm import MarkovChain, chain_factors, forward_log_likelihood

from .categorical import (
    CHAIN_ENCODER_ITERATIONS, BaselineNet, InputStandardizer, baseline_options, check_baseline, em_start,
    fit_deterministic, plate_scale, warm_start_rows,
)
from .encoders import encoder_input

#: steps per block and steps of context either side when a long sequence is read in windows
CORE, CONTEXT = 64, 64
#: closed-form EM iterations from the k-means++ start before the guide is fitted (S&P: converged by ~20)
CHAIN_EM_START_ITERATIONS = 30
#: started at EM's fit, the gradients of the s-th update are multiplied by STEP_DECAY ** s
STEP_DECAY = 0.95


class AmortizedMarkovGuide(LocalParams, PyroModule):
    """q(z_t | z_{t-1}, x_{1:T}) from a bidirectional GRU over (N, T, D) sequences; one site ``z`` (N, T).

    Args:
        input_dim: D (2 D with ``mask_input``).
        states: K.
        hidden: GRU state size per direction.
        baseline: ``"decaying"``, ``"neural"`` (sum over steps of b(x_t), times the plate's
            scale) or ``"none"`` (see :mod:`dlvm.guides.categorical`).
        mask_input: feed [x, mask] to the GRU.
        cell: ``"gru"`` or ``"lstm"``.
    """

    #: the whole chain z_0 .. z_{T-1} as one site "z" (the HMM paired with this guide samples it so too)
    covers: tuple[str, ...] = ("z",)
    #: the schedule the engine applies to the fit's updates: set by :meth:`warm_start` at EM's fit
    step_schedule: StepSchedule | None = None

    def __init__(self, input_dim: int, states: int, hidden: int = 32, baseline: str = "neural",
                 mask_input: bool = False, cell: str = "gru", structured: bool = False):
        check_baseline(baseline)
        if cell not in ("gru", "lstm"):
            raise ValueError(f"cell must be 'gru' or 'lstm', not {cell!r}")
        super().__init__()
        self.states = states
        rnn = nn.GRU if cell == "gru" else nn.LSTM
        self.structured = structured
        evidence = states + states * states if structured else 0
        self.rnn = rnn(input_dim + evidence, hidden, batch_first=True, bidirectional=True)
        self.first_head = nn.Linear(2 * hidden, states)
        self.step_head = nn.Linear(2 * hidden, states * states)
        self.message_head = nn.Linear(2 * hidden, states)
        for head in (self.first_head, self.step_head, self.message_head):
            nn.init.zeros_(head.weight)
            nn.init.zeros_(head.bias)
        self.pieces = None
        self.baseline = baseline
        self.baseline_net = BaselineNet(input_dim) if baseline == "neural" else None
        self.mask_input = mask_input
        self.standardize = InputStandardizer((input_dim // 2 if mask_input else input_dim,))

    def features(self, x, mask=None):
        """What the GRU and the baseline read at each step: standardised x_t (with the mask if asked)."""
        return encoder_input(self.standardize(x), mask, self.mask_input)

    def states_of(self, inputs):
        """The bi-GRU's state at every step, (N, T, F) -> (N, T, 2 hidden).

        A sequence longer than ``CORE + 2 CONTEXT`` steps is read in overlapping windows: every
        block of ``CORE`` steps with ``CONTEXT`` steps either side (zeros beyond the ends, the
        standardised mean), all windows as one batch, the blocks' states kept. The recurrence then
        runs ``CORE + 2 CONTEXT`` steps instead of T (a 8,000-step series: 5 s -> 0.1 s a pass),
        and h_t sees x_{t-CONTEXT..t+CONTEXT} at least."""
        n, length, width = inputs.shape
        if length <= CORE + 2 * CONTEXT:
            return self.rnn(inputs)[0]
        blocks = -(-length // CORE)
        padded = nn.functional.pad(inputs, (0, 0, CONTEXT, CONTEXT + blocks * CORE - length))
        windows = padded.unfold(1, CORE + 2 * CONTEXT, CORE)  # (N, blocks, F, window)
        h, _ = self.rnn(windows.reshape(n * blocks, width, -1).transpose(1, 2))
        return h[:, CONTEXT:CONTEXT + CORE].reshape(n, blocks * CORE, -1)[:, :length]

    def model_inputs(self, x, mask=None):
        """(the GRU's input (N, T, F), the model's chain factors or None). Structured: the model's
        normalised emission log-densities log p(x_t | k) - log sum_j p(x_t | j) and log A join
        the standardised x at every step (no gradient), so the messages can follow the model."""
        inputs = self.features(x, mask)
        if self.pieces is None:
            return inputs, None
        log_pi, log_a, emission = (p.detach() for p in self.pieces(x, mask))
        n, length, k = emission.shape
        evidence = [emission.log_softmax(-1), log_a.reshape(1, 1, k * k).expand(n, length, k * k)]
        return torch.cat([inputs, *(e.to(inputs) for e in evidence)], -1), chain_factors(log_pi, log_a, emission)

    def logits(self, x, mask=None):
        """(logits of z_1 (N, K), logits of z_t given z_{t-1} for t >= 2 (N, T-1, K, K); row = previous state).

        Structured (see :meth:`follow`): the model's own chain factors plus a
        learned log backward message m_t(j) = message_head(h_t)_j for every step,
        log pi_j + log p(x_1 | j) + m_1(j) and log A_ij + log p(x_t | j) + m_t(j), the form of the
        exact posterior (with m_t = log beta_t); the factors enter as inputs (no gradient flows
        through them into the model). Free: a K x K table per step from the GRU state."""
        inputs, factors = self.model_inputs(x, mask)
        h = self.states_of(inputs)
        if factors is None:
            k = self.states
            return self.first_head(h[:, 0]), self.step_head(h[:, 1:]).unflatten(-1, (k, k))
        first, steps = factors
        messages = self.message_head(h)
        return first + messages[:, 0], steps + messages[:, 1:].unsqueeze(-2)

    def follow(self, model) -> None:
        """Build q on the model's chain (``model.chain_pieces(x, mask)`` -> log pi, log A, emission
        log-densities), for a guide made with ``structured=True``: q then moves with the model's
        transitions and emissions, and the network learns only what they lack, the evidence of
        the future steps (the backward messages)."""
        if not self.structured:
            raise ValueError("follow() needs a guide built with structured=True")
        self.pieces = model.chain_pieces

    def chain(self, x, mask=None) -> MarkovChain:
        """q(z_{1:T} | x) as a distribution with batch shape (N,), event shape (T,)."""
        return MarkovChain(*self.logits(x, mask))

    def baseline_steps(self, x, mask=None):
        """The neural baseline's share of each step, b(x_t), shape (N, T)."""
        inputs = self.features(x, mask)
        return self.baseline_net(inputs.flatten(0, 1)).unflatten(0, inputs.shape[:2])

    def warm_start(self, model, x, mask=None) -> None:
        """Start from the model: standardise inputs with x's moments; fit the logits to the exact
        posterior by minimising the chain's cross-entropy -E_p[log q(z | x)] per step
        (``CHAIN_ENCODER_ITERATIONS`` L-BFGS iterations, at most ``WARM_START_ROWS`` sequences). A
        structured guide's baseline residual starts at 0; an unstructured guide's b(x_t) is
        fitted to log p(x_t | x_{1:t-1}) (squared error in units of its spread). When the EM
        iterations moved the model to EM's fit, the guide declares ``step_schedule`` (decay
        ``STEP_DECAY``) for the fit that follows. A Bayesian model (no exact posterior of its own)
        gets the standardisation only."""
        width = x.shape[-1]
        self.standardize.fit(x.reshape(-1, width), None if mask is None else mask.reshape(-1, width))
        if getattr(model, "bayesian", False) or not hasattr(model, "pairwise_posterior"):
            return
        at_em = em_start(model, x, mask, CHAIN_EM_START_ITERATIONS)
        xs, ms = warm_start_rows(x, mask)
        dtype = self.first_head.weight.dtype  # the guide may not have the model's dtype yet
        with torch.no_grad():
            start, pairs = (p.to(dtype) for p in model.pairwise_posterior(xs, ms))
        xs = xs.to(dtype)
        length = xs.shape[0] * xs.shape[1]

        def cross_entropy():
            first, moves = self.logits(xs, ms)
            return -((start * first.log_softmax(-1)).sum() + (pairs * moves.log_softmax(-1)).sum()) / length

        networks = [self.rnn, self.first_head, self.step_head, self.message_head]
        fit_deterministic([p for net in networks for p in net.parameters()], cross_entropy, CHAIN_ENCODER_ITERATIONS)
        if self.baseline_net is not None and self.pieces is not None:
            with torch.no_grad():  # the residual after log p(x) starts at 0 (q fitted to p(z | x))
                self.baseline_net.out.weight.zero_()
                self.baseline_net.out.bias.zero_()
        elif self.baseline_net is not None:
            with torch.no_grad():
                steps = model.step_log_likelihood(xs, ms).to(dtype)
                self.baseline_net.out.bias.fill_(float(steps.mean()))
            spread = steps.std().clamp(min=1e-3) if steps.numel() > 1 else steps.new_ones(())
            fit_deterministic(list(self.baseline_net.parameters()),
                              lambda: ((self.baseline_steps(xs, ms) - steps) / spread).pow(2).mean())
        # SVI refines EM's fit with shrinking steps (see the module docstring)
        self.step_schedule = StepSchedule(STEP_DECAY) if at_em else None

    def baseline_value(self, x, mask=None, size=None):
        """The neural baseline of each sequence's cost, (N,): sum_t b(x_t), plus, when q follows
        the model, log p(x) from the model's factors (the forward algorithm; no gradient), so that
        b(x_t) learns only the small residual -KL(q || p(z | x)) and the baseline moves with the
        model; times the plate's scale N / B."""
        value = self.baseline_steps(x, mask).sum(-1)
        if self.pieces is not None:
            with torch.no_grad():
                value = value + forward_log_likelihood(*self.pieces(x, mask))
        return plate_scale(x, size) * value

    def forward(self, x, mask=None, size=None):
        value = self.baseline_value(x, mask, size) if self.baseline == "neural" else None
        with data_plate(x, size):
            return pyro.sample("z", self.chain(x, mask), infer=baseline_options(self.baseline, value=value))
