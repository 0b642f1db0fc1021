"""Gaussian hidden Markov model: a Gaussian mixture whose component follows a Markov chain (§6.3.3).

For a sequence x_1..x_T in R^D and hidden states z_t in {1..K}::

    z_1 ~ Categorical(pi),   z_t | z_{t-1} ~ Categorical(A[z_{t-1}]),   x_t | z_t = k ~ N(mu_k, Sigma_k)

Data are sequences, shape (N, T, D): one long series is (1, T, D), a batch of windows or assets
(N, T, D). The ``"data"`` plate runs over sequences. Missing coordinates (``mask`` False) are
marginalised out of the emission densities; a step with nothing observed contributes only its
transition, so sequences of different lengths can be padded at the end with a False mask.

Everything is exact: log p(x_{1:T}) by the forward algorithm (as a log-space product of the T
transition-emission matrices, reduced pairwise in O(log T) sequential steps), the posterior state
marginals p(z_t | x_{1:T}) (forward-backward, obtained as the gradient of log p(x) with respect to
the emission log-densities), the most probable path (Viterbi), expected durations 1 / (1 - A_kk).

``model`` writes the chain explicitly (sites ``z_0..z_{T-1}`` under ``pyro.markov``, enumerable, and
observation factors ``x_0..x_{T-1}``) for the enumeration guide, or as one site ``z`` of the whole
chain (:class:`MarkovChain`) for the amortized guide; ``marginal_model``
observes log p(x) directly (fast, exact: the ``exact`` guide). Globals are maximum likelihood, or
with ``bayesian=True`` Dirichlet(1) on pi and on every row of A plus the emission priors of
:class:`~dlvm.models.components.GaussianComponents`.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pyro
import pyro.distributions as dist
import torch
from pyro.distributions.torch_distribution import TorchDistribution
from pyro.nn import PyroParam, PyroSample
from pyro.ops.indexing import Vindex
from torch.distributions import constraints

from .base import ExactModel, fill_missing, local_method
from .options import option
from .components import (
    ComponentOptions, GaussianComponents, best_of_restarts, check_components, check_em, each_start, kmeans_start,
    normalized, weighted_moments, weighted_scatter,
)


def log_matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Matrix product in log space: log(exp(a) @ exp(b)), (..., I, J) x (..., J, L) -> (..., I, L)."""
    return (a.unsqueeze(-1) + b.unsqueeze(-3)).logsumexp(-2)


def log_chain_product(mats: torch.Tensor) -> torch.Tensor:
    """log(exp(M_1) @ exp(M_2) @ ... @ exp(M_T)) for mats (..., T, K, K) -> (..., K, K).

    Neighbouring pairs are multiplied in parallel, halving T at each of log2(T) rounds.
    """
    while mats.shape[-3] > 1:
        t = mats.shape[-3]
        even = t - t % 2
        paired = log_matmul(mats[..., 0:even:2, :, :], mats[..., 1:even:2, :, :])
        if t % 2:
            paired = torch.cat([paired, mats[..., -1:, :, :]], dim=-3)
        mats = paired
    return mats[..., 0, :, :]


def scaled_chain_product(mats: torch.Tensor) -> torch.Tensor:
    """log(exp(M_1) @ ... @ exp(M_T)) for mats (..., T, K, K) -> (..., K, K), by matrix products.

    Each exp(M_t - c_t) (c_t its largest entry) is a nonnegative matrix with largest entry 1;
    neighbouring pairs are multiplied in parallel (log2 T rounds of batched matmuls) and every
    product is divided by its largest entry s, whose log joins the running scale sum_t c_t +
    sum log s. The scales are constants for autograd: the value is exact whatever they are, so
    gradients (the forward-backward marginals) are exact too. Entries that underflow to 0 are
    read as the log of the dtype's smallest normal number at the end (no -inf, no NaN gradient).
    """
    tiny = torch.finfo(mats.dtype).tiny
    shift = mats.detach().amax((-2, -1), keepdim=True)
    probs = (mats - shift).exp()
    log_scale = shift.sum(-3)  # (..., 1, 1)
    while probs.shape[-3] > 1:
        t = probs.shape[-3]
        even = t - t % 2
        paired = probs[..., 0:even:2, :, :] @ probs[..., 1:even:2, :, :]
        if t % 2:
            paired = torch.cat([paired, probs[..., -1:, :, :]], dim=-3)
        top = paired.detach().amax((-2, -1), keepdim=True).clamp(min=tiny)
        log_scale = log_scale + top.log().sum(-3)
        probs = paired / top
    return probs[..., 0, :, :].clamp(min=tiny).log() + log_scale


def forward_log_likelihood(log_initial, log_transition, emission) -> torch.Tensor:
    """log p(x_{1:T}) by the forward algorithm.

    Args:
        log_initial: log pi, shape (K,).
        log_transition: log A (rows: from-state), shape (K, K).
        emission: log p(x_t | z_t = k), shape (N, T, K).
    Returns: (N,).
    """
    first, steps = chain_factors(log_initial, log_transition, emission)
    return chain_log_likelihood(first, steps)


def chain_factors(log_initial, log_transition, emission):
    """The chain's factors: log pi_k + log p(x_1 | k) (N, K) and, for t >= 2,
    log A_ij + log p(x_t | j) (N, T-1, K, K); shapes as :func:`forward_log_likelihood`."""
    return log_initial + emission[:, 0], log_transition + emission[:, 1:].unsqueeze(-2)


def chain_log_likelihood(first, steps) -> torch.Tensor:
    """log sum_z exp(first[z_1] + sum_t steps[t, z_{t-1}, z_t]): first (N, K), steps (N, T-1, K, K) -> (N,).

    Its gradient with respect to ``steps`` is the pairwise posterior p(z_{t-1} = i, z_t = j | x)."""
    if steps.shape[1] == 0:
        return first.logsumexp(-1)
    return (first.unsqueeze(-1) + scaled_chain_product(steps)).logsumexp((-2, -1))


class MarkovChain(TorchDistribution):
    """A whole chain z_{1:T} of states in {0..K-1} as one distribution (event shape (T,)).

    q(z_{1:T}) = softmax(first)[z_1] prod_{t>=2} softmax(steps[t-1])[z_{t-1}, z_t], with
    ``first_logits`` (..., K) and ``step_logits`` (..., T-1, K, K) (row: previous state; each row
    is normalised here). ``log_prob`` is the chain's joint log-density as one vectorised
    expression; ``sample`` draws every step at once: each step's uniform turns the K possible
    previous states into next states (a map {0..K-1} -> {0..K-1}), and the maps' running
    compositions come from a parallel prefix scan (log2 T rounds of gathers), applied to z_1.
    Not reparameterisable: a sampling guide over it is trained by score-function gradients.
    """

    arg_constraints = {"first_logits": constraints.real_vector, "step_logits": constraints.real}
    has_rsample = False

    def __init__(self, first_logits, step_logits, validate_args=None):
        self.first_logits, self.step_logits = first_logits, step_logits
        self.states = first_logits.shape[-1]
        batch_shape = torch.broadcast_shapes(first_logits.shape[:-1], step_logits.shape[:-3])
        super().__init__(batch_shape, torch.Size([step_logits.shape[-3] + 1]), validate_args=validate_args)

    @constraints.dependent_property(is_discrete=True, event_dim=1)
    def support(self):
        return constraints.independent(constraints.integer_interval(0, self.states - 1), 1)

    def expand(self, batch_shape, _instance=None):
        batch_shape = torch.Size(batch_shape)
        k = self.states
        return MarkovChain(self.first_logits.expand(batch_shape + (k,)),
                           self.step_logits.expand(batch_shape + self.step_logits.shape[-3:]))

    def log_prob(self, value):
        """sum of log q(z_1) and log q(z_t | z_{t-1}): value (..., T) -> (...)."""
        k = self.states
        first = self.first_logits.log_softmax(-1)
        head = first.expand(value.shape[:-1] + (k,)).gather(-1, value[..., :1]).squeeze(-1)
        if value.shape[-1] == 1:
            return head
        steps = self.step_logits.log_softmax(-1).flatten(-2)  # (..., T-1, K * K)
        pairs = (value[..., :-1] * k + value[..., 1:]).unsqueeze(-1)
        moves = steps.expand(pairs.shape[:-1] + (k * k,)).gather(-1, pairs).squeeze(-1)
        return head + moves.sum(-1)

    @torch.no_grad()
    def sample(self, sample_shape=torch.Size()):
        shape = torch.Size(sample_shape) + self.batch_shape
        k, length = self.states, self.event_shape[0]
        first = self.first_logits.softmax(-1).cumsum(-1).expand(shape + (k,))
        u = torch.rand(shape + (1,), dtype=first.dtype, device=first.device)
        z = (first < u).sum(-1).clamp(max=k - 1)  # inverse CDF
        if length == 1:
            return z.unsqueeze(-1)
        cdf = self.step_logits.softmax(-1).cumsum(-1).expand(shape + (length - 1, k, k))
        u = torch.rand(shape + (length - 1, 1, 1), dtype=cdf.dtype, device=cdf.device)
        maps = (cdf < u).sum(-1).clamp(max=k - 1)  # (..., T-1, K): next state from each previous one
        offset = 1
        while offset < length - 1:  # maps[t] <- maps[t] o maps[t - offset] (inclusive scan)
            composed = maps[..., offset:, :].gather(-1, maps[..., :-offset, :])
            maps = torch.cat([maps[..., :offset, :], composed], dim=-2)
            offset *= 2
        rest = maps.gather(-1, z[..., None, None].expand(shape + (length - 1, 1))).squeeze(-1)
        return torch.cat([z.unsqueeze(-1), rest], dim=-1)


def chain_posterior(first, steps):
    """p(z_1 = k | x) (N, K) and p(z_{t-1} = i, z_t = j | x) (N, T-1, K, K) of the chain with
    factors ``first``, ``steps`` (:func:`chain_factors`): the gradients of its log-likelihood."""
    with torch.enable_grad():
        first, steps = first.detach().requires_grad_(True), steps.detach().requires_grad_(True)
        total = chain_log_likelihood(first, steps).sum()
        start, pairs = torch.autograd.grad(total, (first, steps), allow_unused=True)
    return start, torch.zeros_like(steps) if pairs is None else pairs


def predictive_log_likelihoods(log_initial, log_transition, emission) -> torch.Tensor:
    """log p(x_t | x_{1:t-1}) for every step by the normalised forward filter (the first step:
    log p(x_1)); shapes as :func:`forward_log_likelihood`, returns (N, T), summing to log p(x_{1:T})."""
    log_alpha = log_initial + emission[:, 0]  # (N, K)
    steps = [log_alpha.logsumexp(-1)]
    for t in range(1, emission.shape[1]):
        filtered = log_alpha - steps[-1].unsqueeze(-1)  # log p(z_{t-1} | x_{1:t-1})
        log_alpha = log_matmul(filtered.unsqueeze(-2), log_transition).squeeze(-2) + emission[:, t]
        steps.append(log_alpha.logsumexp(-1))
    return torch.stack(steps, -1)


def viterbi_path(log_initial, log_transition, emission) -> torch.Tensor:
    """Most probable state sequence argmax_z p(z_{1:T} | x_{1:T}): emission (N, T, K) -> (N, T)."""
    e = emission.detach().cpu().double().numpy()
    log_a = log_transition.detach().cpu().double().numpy()
    n, t_len, k = e.shape
    delta = log_initial.detach().cpu().double().numpy() + e[:, 0]
    back = np.zeros((n, t_len, k), dtype=np.int64)
    for t in range(1, t_len):
        scores = delta[:, :, None] + log_a  # (N, from, to)
        back[:, t] = scores.argmax(1)
        delta = np.take_along_axis(scores, back[:, t][:, None, :], 1)[:, 0] + e[:, t]
    path = np.zeros((n, t_len), dtype=np.int64)
    path[:, -1] = delta.argmax(-1)
    for t in range(t_len - 1, 0, -1):
        path[:, t - 1] = back[np.arange(n), t, path[:, t]]
    return torch.as_tensor(path, device=emission.device)


def check_sequences(x: torch.Tensor) -> None:
    if x.ndim != 3:
        raise ValueError(
            f"HMM data must be sequences of shape (N, T, D), got {tuple(x.shape)}; "
            "one series of T rows is x[None]"
        )


class GaussianHMM(ExactModel):
    """Gaussian HMM with K hidden states.

    Args:
        num_features: D.
        states: K.
        covariance: ``"full"`` or ``"diag"`` emission covariances.
        bayesian: Dirichlet(1) priors on pi and the rows of A, priors on the emissions.
        restarts: k-means++ starts (:meth:`starts`): EM continues the best of short runs from each,
            :meth:`initialize` keeps the likeliest start.
    """

    name = "hmm"
    summary = "Gaussian hidden Markov model; the table's rows are one time series in order"
    guides = ("exact", "enum", "amortized")
    example_shape = (6, 2)
    example_options = {"states": 2}
    series_table = True
    latent_kind = "markov"
    max_plate_nesting = 1

    @dataclass(frozen=True)
    class Options(ComponentOptions):
        states: int = option(2, "K, the hidden states", low=1)

    @classmethod
    def from_options(cls, event_shape, options):
        if len(event_shape) != 2:
            raise ValueError(f"{cls.name} needs sequences (N, T, D), got rows of shape {tuple(event_shape)}")
        return cls(event_shape[1], options.states, options.covariance, options.bayesian, options.restarts)

    def __init__(self, num_features: int, states: int, covariance: str = "full",
                 bayesian: bool = False, restarts: int = 5):
        check_components(states, what="states")
        super().__init__()
        self.num_features = num_features
        self.states = states
        self.bayesian = bayesian
        self.restarts = restarts
        self.initial_globals: dict = {}
        self.gaussians = GaussianComponents(num_features, states, covariance, bayesian)
        self.register_buffer("concentration", torch.ones(states))
        if bayesian:
            self.initial = PyroSample(lambda s: dist.Dirichlet(s.concentration))
            self.transition = PyroSample(
                lambda s: dist.Dirichlet(s.concentration.expand(s.states, s.states)).to_event(1)
            )
        else:
            eye = torch.eye(states)
            self.initial = PyroParam(torch.full((states,), 1.0 / states), constraint=constraints.simplex)
            self.transition = PyroParam(0.9 * eye + 0.1 / states, constraint=constraints.simplex)

    #: one site ``z`` for the whole chain in :meth:`model` (the amortized guide's form), else one per step
    joint_chain = False

    @property
    def latent_sites(self) -> tuple[str, ...]:  # z_0 .. z_{T-1}: named per step, or one site z
        return ("z",) if self.joint_chain else ("z_t",)

    # -- generative model
    def _pieces(self, x, mask):
        """log pi (K,), log A (K, K), emission log-densities (N, T, K); every global read once."""
        check_sequences(x)
        return self.initial.log(), self.transition.log(), self.gaussians.log_prob(x, mask)

    def model(self, x, mask=None, size=None):
        """The chain written step by step: ``z_t`` enumerable, ``x_t`` observed as log p(x_t | z_t).

        With ``joint_chain`` (set when paired with the amortized guide) the same joint density as
        one site ``z`` (N, T) from :class:`MarkovChain`(log pi, log A) and one factor ``x`` =
        sum_t log p(x_t | z_t): vectorised over time, so a score-function ELBO costs one pass."""
        check_sequences(x)
        initial, transition = self.initial, self.transition
        emission = self.gaussians.log_prob(x, mask)
        with self.data_plate(x, size):
            if self.joint_chain:
                n, t, k = emission.shape
                chain = MarkovChain(initial.log().expand(n, k), transition.log().expand(n, t - 1, k, k))
                z = pyro.sample("z", chain)
                pyro.factor("x", emission.expand(z.shape + (k,)).gather(-1, z.unsqueeze(-1)).squeeze(-1).sum(-1))
                return
            z = None
            for t in pyro.markov(range(x.shape[1])):
                probs = initial if z is None else Vindex(transition)[..., z, :]
                z = pyro.sample(f"z_{t}", dist.Categorical(probs), infer={"enumerate": "parallel"})
                pyro.factor(f"x_{t}", Vindex(emission[:, t])[..., z])

    def marginal_model(self, x, mask=None, size=None):
        """The collapsed model: log p(x_{1:T}) of each sequence by the forward algorithm."""
        log_pi, log_a, emission = self._pieces(x, mask)
        with self.data_plate(x, size):
            pyro.factor("x", forward_log_likelihood(log_pi, log_a, emission))

    # -- exact quantities
    @local_method
    def log_marginal(self, x, mask=None) -> torch.Tensor:
        """Exact log p(x_{1:T}) per sequence, shape (N,)."""
        return forward_log_likelihood(*self._pieces(x, mask))

    @local_method
    def step_log_likelihood(self, x, mask=None) -> torch.Tensor:
        """One-step-ahead log p(x_t | x_{1:t-1}) of every step (N, T); summed over t: :meth:`log_marginal`."""
        return predictive_log_likelihoods(*self._pieces(x, mask))

    def observations_per_row(self, x, mask=None) -> torch.Tensor:
        """Observed time steps per sequence (N,): ``log_likelihood`` metrics are per time step."""
        check_sequences(x)
        if mask is None:
            return x.new_full((x.shape[0],), float(x.shape[1]))
        return mask.any(-1).sum(-1).to(x.dtype)

    @local_method
    def posterior(self, x, mask=None) -> torch.Tensor:
        """Smoothed state marginals p(z_t = k | x_{1:T}) (forward-backward), shape (N, T, K)."""
        log_pi, log_a, emission = self._pieces(x, mask)
        with torch.enable_grad():
            emission = emission.detach().requires_grad_(True)
            total = forward_log_likelihood(log_pi.detach(), log_a.detach(), emission).sum()
            (marginals,) = torch.autograd.grad(total, emission)
        return marginals

    @local_method
    def chain_pieces(self, x, mask=None):
        """log pi (K,), log A (K, K) and the emission log-densities log p(x_t | k) (N, T, K)."""
        return self._pieces(x, mask)

    @local_method
    def chain_factors(self, x, mask=None):
        """log pi_k + log p(x_1 | k) (N, K) and log A_ij + log p(x_t | j) (N, T-1, K, K) (:func:`chain_factors`)."""
        return chain_factors(*self._pieces(x, mask))

    @local_method
    def pairwise_posterior(self, x, mask=None):
        """p(z_1 = k | x) (N, K) and p(z_{t-1} = i, z_t = j | x_{1:T}) (N, T-1, K, K): the gradients
        of log p(x) with respect to the chain's factors (:func:`chain_factors`)."""
        return chain_posterior(*self.chain_factors(x, mask))

    @local_method
    def viterbi(self, x, mask=None) -> torch.Tensor:
        """Most probable state path per sequence, shape (N, T)."""
        with torch.no_grad():
            return viterbi_path(*self._pieces(x, mask))

    @local_method
    def covariances(self) -> torch.Tensor:
        """Emission covariances Sigma_k, shape (K, D, D)."""
        return self.gaussians.covariances()

    @property
    def means(self) -> torch.Tensor:
        """Emission means mu_k, shape (K, D)."""
        return self.gaussians.current()[0]

    @local_method
    def expected_durations(self) -> torch.Tensor:
        """Expected stay in each state, 1 / (1 - A_kk) time steps, shape (K,)."""
        with torch.no_grad():
            return 1.0 / (1.0 - torch.diagonal(self.transition)).clamp(min=1e-12)

    @local_method
    def stationary_distribution(self) -> torch.Tensor:
        """The stationary distribution of the chain (left eigenvector of A for eigenvalue 1), (K,)."""
        with torch.no_grad():
            a = self.transition
            k = a.shape[0]
            system = torch.cat([(a.T - torch.eye(k, dtype=a.dtype, device=a.device)), a.new_ones(1, k)])
            rhs = torch.cat([a.new_zeros(k), a.new_ones(1)])
            return torch.linalg.lstsq(system, rhs.unsqueeze(-1)).solution.squeeze(-1)

    @local_method
    @torch.no_grad()
    def sample(self, length: int, n: int = 1, return_states: bool = False):
        """n sequences of ``length`` steps (n, T, D) (and their states (n, T) with ``return_states``)."""
        if length < 1 or n < 1:
            raise ValueError(f"sample length and count must be positive, got {length} and {n}")
        initial, transition = self.initial, self.transition
        states = [torch.multinomial(initial, n, replacement=True)]
        for _ in range(1, length):
            states.append(torch.multinomial(transition[states[-1]], 1).squeeze(-1))
        z = torch.stack(states, dim=1)
        x = self.gaussians.sample(z)
        return (x, z) if return_states else x

    def num_parameters(self) -> int:
        k = self.states
        return (k - 1) + k * (k - 1) + self.gaussians.num_parameters()

    # -- closed-form EM (Baum-Welch)
    def em_step(self, x, mask=None) -> float:
        """One Baum-Welch iteration in place; returns the total log p(x_{1:T}) before it.

        E-step (the exact posterior of the chain): with L = sum_n log p(x_n) from the forward
        algorithm, dL / d log p(x_t | k) = gamma_t(k) = p(z_t = k | x) and dL / d log A_ij =
        sum_t xi_t(i, j) = sum_t p(z_{t-1} = i, z_t = j | x) (forward-backward by autograd through
        :func:`scaled_chain_product`). M-step: pi = mean_n gamma_1, A_ij = sum_t xi_t(i, j) /
        sum_j (...), emission means and covariances weighted by gamma (as a mixture's M-step).
        x (N, T, D) complete sequences; ``mask`` is refused (:func:`check_em`).
        """
        check_em(self, mask)
        check_sequences(x)
        n, t, d = x.shape
        flat = x.reshape(-1, d)
        with torch.enable_grad():
            log_pi = self.initial.detach().log().requires_grad_(True)
            log_a = self.transition.detach().log().requires_grad_(True)
            emission = self.gaussians.complete_log_prob(flat).reshape(n, t, self.states).requires_grad_(True)
            total = forward_log_likelihood(log_pi, log_a, emission).sum()
            starts, transitions, gamma = torch.autograd.grad(total, (log_pi, log_a, emission), allow_unused=True)
        with torch.no_grad():
            transitions = torch.zeros_like(log_a) if transitions is None else transitions  # T = 1
            self.initial = normalized(starts)
            self.transition = normalized(transitions)
            _, means, scatter = weighted_scatter(flat, gamma.reshape(-1, self.states), self.gaussians.full)
            self.gaussians.set_maximum_likelihood(means, scatter)
        return float(total.detach())

    # -- initialisation
    @torch.no_grad()
    def initialize(self, x, mask=None) -> None:
        """Emissions from a k-means++ clustering of all time steps, pi and A from the counted
        starts and transitions of the cluster labels (plus one); best of ``restarts`` by exact
        log-likelihood (Bayesian: the start is handed to the guide on globals). Baum-Welch
        (:func:`~dlvm.inference.em.fit_em`) instead runs from each of :meth:`starts` and keeps the
        best end."""
        if self.bayesian:
            start, filled = self._start_rule(x, mask)
            self.gaussians.set_prior(filled)
            self.initial_globals = start(None)
            return
        best_of_restarts(self, x, mask, self.starts(x, mask))
        self.initialized(x, mask)

    @torch.no_grad()
    def starts(self, x, mask=None) -> Iterator[int]:
        """Set the model to each of its ``restarts`` k-means++ starts in turn, yielding the
        restart's index after each."""
        return each_start(self.restarts, self._start_rule(x, mask)[0])

    def _start_rule(self, x, mask):
        """``start(generator)``, which sets (or, Bayesian, returns) one k-means++ start, and the
        sequences with missing entries filled; sets the emissions' variance floor."""
        check_sequences(x)
        steps = x.shape[0] * x.shape[1]
        check_components(self.states, steps, "states")
        filled = fill_missing(x, mask)
        flat = filled.reshape(-1, self.num_features)
        self.gaussians.set_floor(flat)

        def start(generator):
            resp = kmeans_start(flat, self.states, generator)
            labels = resp.argmax(-1).reshape(x.shape[0], x.shape[1])
            k = self.states
            counts = torch.ones(k, k, dtype=x.dtype, device=x.device)
            counts.index_put_((labels[:, :-1].reshape(-1), labels[:, 1:].reshape(-1)),
                              x.new_ones(labels[:, 1:].numel()), accumulate=True)
            first = torch.bincount(labels[:, 0], minlength=k).to(x.dtype) + 1.0
            _, means, cov = weighted_moments(flat, resp, self.gaussians.full, self.gaussians.variance_floor)
            values = {"initial": first / first.sum(), "transition": counts / counts.sum(-1, keepdim=True)}
            emissions = self.gaussians.set_moments(means, cov)
            if self.bayesian:
                return {**values, **{f"gaussians.{name}": v for name, v in emissions.items()}}
            self.initial, self.transition = values["initial"], values["transition"]
            return {}

        return start, filled
