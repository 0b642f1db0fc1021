"""TimeVAE, base and interpretable (§6.6.1.2-6.6.1.3, Desai et al. 2021, arXiv 2111.08095).

Generative model for windows x_i of shape (T, D) with a latent z_i in R^K::

    z_i ~ N(0, I_K),    u_i = mean(z_i) in the min-max scaled space,
    x_i | z_i ~ N(low + span * u_i, (span * sigma)^2)   elementwise

where low and span are the per-feature minimum and range of the training data (set by
``initialize``, as the paper scales every feature to [0, 1]), so the density and :meth:`sample`
are on the original scale. The scaled mean is a sum of decoder blocks that each read z
(Figure 6.9)::

    u = level(z) + trend(z) + sum_j seasonal_j(z) + residual(z)

- level: a dense layer z -> D values, the same at every step;
- trend of degree P: a dense layer z -> D x P coefficients a_{dp}, trend_{td} = sum_p a_{dp} tau_t^p
  with tau_t = t / T (t = 0..T-1), so degree 1 is a straight line through 0 at t = 0;
- seasonal (S seasons of L steps): a dense layer z -> D x S values c_{ds}, centred over the
  seasons (sum_s c_{ds} = 0, so that the level, not the season, holds the mean), seasonal_{td} =
  c_{d,(t // L) mod S}, periodic with period S L;
- residual: the base TimeVAE decoder, dense -> reshape -> transposed Conv1d layers (stride 2,
  ReLU) -> time-distributed dense (the :class:`~dlvm.models.decoders.Emission` output layer).

Beside the blocks that read z, two dynamic-linear-model components (§6.6.1.2) are latent
processes of their own, summed out exactly given z (:class:`StateBlocks`): a random-walk local
level started at level(z), and a short-term AR(p) process with stationary coefficients. With
either, x | z is Gaussian with a (T, T) covariance per feature (:class:`TemporalGaussian`).

The base TimeVAE is the residual block alone. The encoder q(z | x) is the guide's (stride-2 Conv1d
layers, flatten, dense: encoder ``conv-stride2`` in dlvm.guides).

Likelihood. TimeVAE minimises w * sum_{t,d} (x_td - u_td)^2 + KL(q(z|x) || p(z)) on scaled data,
with default w = 3. With a Gaussian of fixed scale sigma the negative ELBO is
sum (x - u)^2 / (2 sigma^2) + KL + a constant, so the two losses have the same minimiser and the
same gradients when w = 1 / (2 sigma^2), i.e. sigma = (2 w)^(-1/2): sigma = 0.408 (= 1/sqrt 6) on
the [0, 1] scale reproduces the paper's weight of 3 (likelihood ``gaussian-fixed``, the paper's
recipe, whose samples are E[x | z]). One number for every feature is wrong for most data: a
noise-like feature needs a large sigma, a smooth one a small sigma. The likelihood
``gaussian-feature`` learns sigma_d per feature by maximising the ELBO (the weight of feature d
becomes w_d = 1 / (2 sigma_d^2), fitted rather than set by hand); ``gaussian-step`` learns
sigma_td per step and feature, ``gaussian`` makes it a decoder output sigma_td(z)
(heteroscedastic). With a learned scale :meth:`sample` draws from the full predictive
x ~ p(x | z) (``noise=False`` gives the decoder mean E[x | z]), so noise-like features keep
their spread: per feature Var[x_td] = E_z[sigma_td(z)^2] + Var_z[E[x_td | z]].

Correlated noise. Independent noise per entry draws columns that move together (open, high, low
and close prices) apart, and draws slow sensors as white noise; a classifier sees both.
``gaussian-correlated`` draws x = E[x | z] + e with a noise process e that is correlated across
features (a full covariance, L L^T) and, per feature, over time (AR(1), |rho_d| <= 0.99):
:class:`CorrelatedNoiseGaussian`, its log-density exact, its parameters held at independent white
noise during the warm-up. It is the default.

Sampling prior. The ELBO pulls each q(z | x) towards N(0, I), but with a learned, small noise
scale the codes of the training windows fill only part of it, and a z drawn from N(0, I) decodes
to a window unlike any seen ("holes" of the aggregate posterior). After training,
:meth:`fit_sampling_prior` keeps the posteriors q(z | x_i) of the training windows and
:meth:`sample` draws z from their mixture (1/N) sum_i q(z | x_i), the aggregate posterior
(``sampling_prior="aggregate"``, the default; Makhzani et al. 2016 name it, Tomczak & Welling 2018
make a prior of it); ``mixture`` fits a Gaussian mixture of C components by EM to one draw per
window instead (ex-post density estimation, Ghosh et al. 2020), ``normal`` keeps N(0, I).
Training and the ELBO keep the N(0, I) prior.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import pyro.distributions as dist
from torch import nn

from .base import FeatureScaler, sequence_shape
from .decoders import DecoderModel, Emission, check_conv_window, strided_length
from .mixture import GaussianMixture
from .options import ModelOptions, option

#: TimeVAE's defaults (Desai et al. 2021): latent size, conv channels, reconstruction weight
DEFAULT_HIDDEN = (50, 100, 200)
DEFAULT_RECON_WEIGHT = 3.0
#: likelihoods of TimeVAE: where its noise scale comes from (on the min-max scaled data)
NOISE_MODELS = {
    "gaussian-feature": "a learned scale per feature, independent noise",
    "gaussian-step": "a learned scale per step and feature",
    "gaussian": "a scale per step and feature from the decoder (heteroscedastic)",
    "gaussian-correlated": "learned noise correlated across features (a full covariance) and over time (AR(1) per feature) (default)",
    "gaussian-fixed": "one fixed scale, from recon_weight or noise_scale (the paper's recipe; samples E[x | z])",
}
DEFAULT_LIKELIHOOD = "gaussian-correlated"
#: the likelihoods whose noise scales are parameters of the model (``log_noise``)
LEARNED_NOISE = ("gaussian-feature", "gaussian-step", "gaussian-correlated")
#: floor of a learned noise scale on the [0, 1] scaled data
MIN_NOISE = 1e-3
#: log sigma = NOISE_RATE * log_noise: Adam moves a parameter about lr a step whatever its
#: gradient's size, so this lets log sigma travel ten times as fast as the network's weights
NOISE_RATE = 10.0
#: the largest starting sigma (scaled data): every feature starts sharp, so the decoder learns to
#: reconstruct all of them before the noise scales grow to what it cannot explain
NOISE_START = 0.05
#: training steps for which the learned scales stay at their start: a scale learned from the first
#: step rises to a feature's full sd before the decoder has learned to reconstruct it, and a feature
#: with a large sigma weighs little in the ELBO, so the latent code never takes it up (the feature
#: collapses to its mean plus noise); held sharp, every feature is learned first
NOISE_WARMUP = 1000
#: bound on |rho| of the correlated likelihood's AR(1) noise: near 1, so that a slow sensor or a
#: random walk can be drawn as noise, below 1 so that its stationary variance 1 / (1 - rho^2) stays finite
MAX_NOISE_AR = 0.99
#: where :meth:`TimeVAE.sample` draws z from after :meth:`TimeVAE.fit_sampling_prior`
SAMPLING_PRIORS = {
    "aggregate": "the aggregate posterior: q(z | x_i) of a training window i drawn at random",
    "mixture": "a Gaussian mixture fitted by EM to one code z_i ~ q(z | x_i) per training window",
    "normal": "the training prior N(0, I)",
}
DEFAULT_SAMPLING_PRIOR = "aggregate"
#: the most training windows whose posteriors the aggregate sampling prior keeps (a random subset)
AGGREGATE_WINDOWS = 4096
#: components of the Gaussian mixture fitted to the latent codes for sampling (0 = sample N(0, I))
PRIOR_COMPONENTS = 10
#: the fewest training windows per mixture component; with fewer, z is drawn from N(0, I)
PRIOR_ROWS_PER_COMPONENT = 10


def noise_scale_for_weight(recon_weight: float) -> float:
    """The fixed Gaussian scale sigma = (2 w)^(-1/2) equivalent to reconstruction weight w."""
    if not recon_weight > 0:
        raise ValueError(f"the reconstruction weight must be positive, got {recon_weight}")
    return 1.0 / math.sqrt(2.0 * recon_weight)


class Level(nn.Module):
    """z (B, K) -> (B, T, D), constant in time."""

    def __init__(self, latent_dim: int, window: int, features: int):
        super().__init__()
        self.window = window
        self.net = nn.Linear(latent_dim, features)

    def forward(self, z):
        return self.net(z).unsqueeze(1).expand(-1, self.window, -1)


class Trend(nn.Module):
    """Polynomial trend of degree P: z (B, K) -> (B, T, D), sum_p a_{dp}(z) (t / T)^p, p = 1..P."""

    def __init__(self, latent_dim: int, window: int, features: int, degree: int):
        super().__init__()
        if int(degree) != degree or degree < 1:
            raise ValueError(f"the trend degree must be a positive integer, got {degree}")
        self.features, self.degree = features, int(degree)
        self.net = nn.Linear(latent_dim, features * self.degree)
        tau = torch.arange(window, dtype=torch.float32) / window
        self.register_buffer("basis", tau.unsqueeze(0) ** torch.arange(1, self.degree + 1).unsqueeze(1))  # (P, T)

    def forward(self, z):
        coef = self.net(z).reshape(-1, self.features, self.degree)  # (B, D, P)
        return torch.einsum("bdp,pt->btd", coef, self.basis.to(coef.dtype))


class Seasonal(nn.Module):
    """S seasons of L steps each: z (B, K) -> (B, T, D), value c_{d,s}(z) for season s = (t // L) mod S."""

    def __init__(self, latent_dim: int, window: int, features: int, seasons: int, steps: int):
        super().__init__()
        if int(seasons) != seasons or int(steps) != steps or seasons < 2 or steps < 1:
            raise ValueError(f"a seasonal block needs at least 2 seasons of at least 1 step, got {seasons}:{steps}")
        if seasons * steps > window:
            raise ValueError(
                f"the seasonal block {seasons}:{steps} spans {seasons * steps} steps, longer than the window of {window}"
            )
        self.features, self.seasons, self.steps = features, int(seasons), int(steps)
        self.net = nn.Linear(latent_dim, features * self.seasons)
        self.register_buffer("season", (torch.arange(window) // self.steps) % self.seasons, persistent=False)

    def forward(self, z):
        values = self.net(z).reshape(-1, self.features, self.seasons)  # (B, D, S)
        values = values - values.mean(-1, keepdim=True)  # sum to zero over a period: the level holds the mean
        return values[:, :, self.season].transpose(1, 2)


def pacf_to_ar(partial: torch.Tensor) -> torch.Tensor:
    """AR coefficients (..., p) from partial autocorrelations (..., p) in (-1, 1) by the
    Durbin-Levinson recursion phi^(k)_k = r_k, phi^(k)_j = phi^(k-1)_j - r_k phi^(k-1)_(k-j):
    every such phi is stationary (Barndorff-Nielsen & Schou 1973; Monahan 1984)."""
    phi = partial[..., :1]
    for k in range(1, partial.shape[-1]):
        r = partial[..., k:k + 1]
        phi = torch.cat([phi - r * phi.flip(-1), r], -1)
    return phi


#: bound on the AR block's partial autocorrelations: its memory stays short (|phi| <= 0.9 for
#: AR(1), a correlation time of at most ~10 steps), so that it cannot stand in for the random walk
MAX_PARTIAL = 0.9


class StateBlocks(nn.Module):
    """The dynamic-linear-model components of §6.6.1.2 as latent processes per feature d, summed
    out exactly (a Gaussian state-space model given z):

        local level  l_t = l_{t-1} + eta_t,  eta_t ~ N(0, q_d),  l_{-1} = 0   (a random walk)
        AR(p)        a_t = sum_i phi_{d,i} a_{t-i} + e_t,  e_t ~ N(0, r_d),  a_t = 0 before t = 0

    Over a window, l = C eta with C the (T, T) lower-triangular matrix of ones and a = B^-1 e with
    B = I - sum_i phi_i S^i (S the shift), so their covariances over time are
    q_d C C^T and r_d B^-1 B^-T; phi is stationary (:func:`pacf_to_ar`) with partial
    autocorrelations bounded by :data:`MAX_PARTIAL`, and both variances start at 1e-6, so a fit
    starts from the deterministic blocks and lets the states take what z does not explain. The
    level's start is the Level block's l_0(z), so the local level is l_0(z) + l_t; the AR block
    is driven by its latent innovations e_t.
    """

    def __init__(self, window: int, features: int, local_level: bool, ar_order: int):
        super().__init__()
        if int(ar_order) != ar_order or not 0 <= ar_order < window:
            raise ValueError(f"the AR order must be a whole number from 0 to {window - 1}, got {ar_order}")
        self.window, self.local_level, self.ar_order = window, bool(local_level), int(ar_order)
        self.register_buffer("ones", torch.tril(torch.ones(window, window)), persistent=False)
        if local_level:
            self.level_log_var = nn.Parameter(torch.full((features,), math.log(1e-6)))
        if ar_order:
            self.ar_log_var = nn.Parameter(torch.full((features,), math.log(1e-6)))
            self.partial = nn.Parameter(torch.zeros(features, self.ar_order))

    def coefficients(self) -> torch.Tensor:
        """AR coefficients phi, (D, p), from partial autocorrelations in (-MAX_PARTIAL, MAX_PARTIAL)."""
        return pacf_to_ar(MAX_PARTIAL * torch.tanh(self.partial))

    def ar_filter(self) -> torch.Tensor:
        """B^-1 per feature, (D, T, T): a = B^-1 e."""
        phi = self.coefficients()
        eye = torch.eye(self.window, dtype=phi.dtype, device=phi.device)
        b = eye.expand(phi.shape[0], -1, -1).clone()
        for i in range(self.ar_order):
            b = b - phi[:, i, None, None] * torch.diag_embed(eye.new_ones(self.window - i - 1), -(i + 1))
        return torch.linalg.solve_triangular(b, eye.expand_as(b), upper=False)

    def covariances(self) -> dict[str, torch.Tensor]:
        """Each component's covariance over time per feature, (D, T, T), on the scaled data."""
        out = {}
        if self.local_level:
            c = self.ones.to(self.level_log_var.dtype)
            out["local_level"] = self.level_log_var.exp()[:, None, None] * (c @ c.T)
        if self.ar_order:
            inv = self.ar_filter()
            out["ar"] = self.ar_log_var.exp()[:, None, None] * (inv @ inv.mT)
        return out


class WindowGaussian(dist.TorchDistribution):
    """Windows x (B, T, D), Gaussian around ``loc`` with entries dependent within a window; batch
    shape (B, T, D), ``log_prob`` per entry by the chain rule (subclasses say in which order)."""

    arg_constraints: dict = {}
    support = dist.constraints.real

    def __init__(self, loc: torch.Tensor):
        self.loc = loc
        super().__init__(loc.shape, validate_args=False)

    @property
    def mean(self):
        return self.loc

    @staticmethod
    def innovation_terms(w: torch.Tensor, scale_tril: torch.Tensor) -> torch.Tensor:
        """log N(w; 0, 1) - log L_ii per entry of innovations w = L^-1 (residual), along L's rows."""
        return -0.5 * w ** 2 - scale_tril.diagonal(dim1=-2, dim2=-1).log() - 0.5 * math.log(2 * math.pi)


class TemporalGaussian(WindowGaussian):
    """Windows x (B, T, D) ~ N(loc, Sigma_bd) with a (T, T) covariance per row b and feature d,
    given by its Cholesky factor ``scale_tril`` (B, D, T, T). Batch shape (B, T, D): ``log_prob``
    gives each entry's log p(x_td | x_<t,d), whose sum over t is the exact log-density (the
    chain rule with the innovations w = L^-1 (x - loc): log N(w_t; 0, 1) - log L_tt)."""

    def __init__(self, loc: torch.Tensor, scale_tril: torch.Tensor):
        self.scale_tril = scale_tril
        super().__init__(loc)

    @property
    def variance(self):
        return self.scale_tril.pow(2).sum(-1).transpose(-1, -2)

    def log_prob(self, value):
        resid = (value - self.loc).transpose(-1, -2).unsqueeze(-1)  # (B, D, T, 1)
        w = torch.linalg.solve_triangular(self.scale_tril, resid, upper=False).squeeze(-1)
        return self.innovation_terms(w, self.scale_tril).transpose(-1, -2)

    def sample(self, sample_shape=torch.Size()):
        shape = torch.Size(sample_shape) + self.loc.transpose(-1, -2).shape + (1,)
        eps = torch.randn(shape, dtype=self.loc.dtype, device=self.loc.device)
        with torch.no_grad():
            return self.loc + (self.scale_tril @ eps).squeeze(-1).transpose(-1, -2)


class CorrelatedNoiseGaussian(WindowGaussian):
    """Windows x (B, T, D) = loc + e with a stationary noise process e that is correlated across
    features and, per feature, over time (a vector AR(1) with diagonal coefficients rho_d)::

        e_t = rho * e_{t-1} + v_t  (t >= 1),    e_0 = v_0 / sqrt(1 - rho^2),    v_t ~ N(0, L L^T) iid

    (elementwise products; the start makes each feature's variance (L L^T)_dd / (1 - rho_d^2) at
    every step). ``scale_tril`` L (D, D), ``rho`` (D,). Batch shape (B, T, D): ``log_prob`` gives
    each entry's log p(x_td | x_<t, x_t,<d) (the chain rule on the innovations w_t = L^-1 v_t, whose
    Jacobian is 1 but for the start's sqrt(1 - rho^2)), whose sum is the exact log-density;
    :meth:`window_covariance` gives the whole window's covariance for conditioning."""

    def __init__(self, loc: torch.Tensor, scale_tril: torch.Tensor, rho: torch.Tensor):
        self.scale_tril, self.rho = scale_tril, rho
        super().__init__(loc)

    @property
    def variance(self):
        return (self.scale_tril.pow(2).sum(-1) / (1 - self.rho ** 2)).expand(self.loc.shape)

    def _start(self):
        return (1 - self.rho ** 2).sqrt()

    def log_prob(self, value):
        e = value - self.loc
        v = torch.cat([e[..., :1, :] * self._start(), e[..., 1:, :] - self.rho * e[..., :-1, :]], -2)
        w = torch.linalg.solve_triangular(self.scale_tril, v.unsqueeze(-1), upper=False).squeeze(-1)
        terms = self.innovation_terms(w, self.scale_tril)
        start = torch.zeros_like(terms)
        start[..., 0, :] = self._start().log()
        return terms + start

    def sample(self, sample_shape=torch.Size()):
        shape = torch.Size(sample_shape) + self.loc.shape + (1,)
        with torch.no_grad():
            v = (self.scale_tril @ torch.randn(shape, dtype=self.loc.dtype, device=self.loc.device)).squeeze(-1)
            steps = [v[..., 0, :] / self._start()]
            for t in range(1, v.shape[-2]):
                steps.append(self.rho * steps[-1] + v[..., t, :])
            return self.loc + torch.stack(steps, -2)

    def window_covariance(self) -> torch.Tensor:
        """Covariance (T D, T D) of a whole window flattened step by step (entry t D + d).

        e_t = sum_(s <= t) C_ts v_s with C_ts = diag(c_ts), c_ts = rho^(t - s) (over
        sqrt(1 - rho^2) when s = 0), so Cov(e_t, e_u)_ij = (L L^T)_ij sum_s c_ts,i c_us,j."""
        steps = self.loc.shape[-2]
        t = torch.arange(steps, device=self.loc.device)
        lag = t[:, None] - t[None, :]
        coef = torch.where((lag >= 0)[..., None], self.rho ** lag.clamp(min=0)[..., None], 0.0)  # (T, T, D)
        coef[:, 0] = coef[:, 0] / self._start()
        cov = (self.scale_tril @ self.scale_tril.T) * torch.einsum("tsi,usj->tuij", coef, coef)
        return cov.permute(0, 2, 1, 3).reshape(steps * len(self.rho), -1)


def posterior_tril(q: dist.Distribution) -> torch.Tensor:
    """Cholesky factor (B, K, K) of a batch of Gaussian posteriors q(z | x), full or diagonal."""
    if hasattr(q, "scale_tril"):
        return q.scale_tril
    return torch.diag_embed(q.variance.sqrt())


def parse_seasonality(seasonality) -> list[tuple[int, int]]:
    """Seasonal blocks as (seasons, steps) pairs, from pairs or "S:L" strings."""
    blocks = []
    for item in seasonality or ():
        if isinstance(item, str):
            try:
                seasons, steps = (int(v) for v in item.split(":"))
            except ValueError:
                raise ValueError(f"a seasonal block is written S:L (seasons:steps per season), got {item!r}") from None
        else:
            seasons, steps = item
        blocks.append((int(seasons), int(steps)))
    return blocks


class TimeVAE(DecoderModel):
    """TimeVAE for (N, T, D) windows; interpretable when it has trend or seasonal blocks.

    Args:
        num_features: D.
        window: T (at least 2^layers: every stride-2 layer halves the length).
        latent_dim: K (paper: 8).
        hidden: conv channels of the encoder; the decoder's transposed convs run them in reverse.
        trend_degree: P of the polynomial trend block (0 = no trend block).
        seasonality: seasonal blocks, (seasons, steps per season) pairs or "S:L" strings.
        level: include the level block (default: when there is a trend or seasonal block).
        residual: include the convolutional decoder (the base TimeVAE); without it the emission
            reads a constant, so its bias is a per-feature baseline.
        likelihood: a key of :data:`NOISE_MODELS`; default ``gaussian-fixed`` when ``recon_weight``
            or ``noise_scale`` is given, ``gaussian-feature`` with state blocks, else ``gaussian-correlated``.
        recon_weight: ``gaussian-fixed``: TimeVAE's reconstruction weight w (default 3), sigma =
            (2 w)^(-1/2) on the scaled data.
        noise_scale: ``gaussian-fixed``: sigma on the scaled data directly (overrides ``recon_weight``).
        sample_noise: whether :meth:`sample` draws x ~ p(x | z) (default: with a learned scale)
            or returns E[x | z] (default with ``gaussian-fixed``, as in the paper).
        sampling_prior: a key of :data:`SAMPLING_PRIORS`, where :meth:`sample` draws z from after
            :meth:`fit_sampling_prior` (default ``aggregate``).
        prior_components: C of the ``mixture`` sampling prior (0 = draw z from N(0, I)).
        noise_warmup: training steps (gradient-taking calls of :meth:`likelihood`) for which the
            learned scales are held at their start (:data:`NOISE_WARMUP`).
        local_level: a random-walk local level (:class:`StateBlocks`) started at the level block.
        ar_order: p of the short-term AR(p) component (:class:`StateBlocks`; 0 = none).
    """

    name = "timevae"
    summary = "TimeVAE for (N, T, D) windows, base or interpretable (§6.6.1.2-6.6.1.3)"
    guides = ("amortized",)
    default_lr = {"amortized": 1e-3}
    #: training settings ``dlvm fit`` uses where the user gives none (see ``LatentVariableModel.fit_defaults``)
    fit_defaults = {"batch_size": 64, "max_epochs": 1000, "early_stopping": 20, "clip_norm": 10.0, "validation": 0.1}
    example_shape = (8, 2)
    example_options = {"latent_dim": 2, "hidden": [4, 8], "trend_poly": 1, "seasonality": ["2:2"]}
    default_encoder = "conv-stride2"

    @dataclass(frozen=True)
    class Options(ModelOptions):
        latent_dim: int = option(8, "K, the size of the latent z", low=1)
        hidden: tuple[int, ...] = option(DEFAULT_HIDDEN, "conv channels of the encoder, e.g. 50,100,200",
                                         metavar="SIZES")
        trend_poly: int = option(0, "degree P of the polynomial trend block (0: none)", metavar="P", low=0)
        seasonality: tuple[str, ...] = option((), "seasonal blocks of S seasons of L steps each", metavar="S:L")
        residual: bool = option(True, "the convolutional residual decoder (the base TimeVAE)")
        local_level: bool = option(False, "a random-walk local level block")
        ar_order: int = option(0, "a short-term AR(P) block driven by the latent (0: none)", metavar="P", low=0)
        likelihood: str | None = option(None, f"noise model: {', '.join(NOISE_MODELS)} (unset: gaussian-fixed "
                                        f"when --recon-weight or --noise-scale is given, gaussian-feature with --local-level "
                                        f"or --ar-order, else {DEFAULT_LIKELIHOOD})")
        recon_weight: float | None = option(None, f"gaussian-fixed: reconstruction weight W, fixed Gaussian scale "
                                            f"(2W)^-1/2 (unset: {DEFAULT_RECON_WEIGHT:g})", metavar="W", positive=True)
        noise_scale: float | None = option(None, "gaussian-fixed: Gaussian scale on the scaled data (overrides W)",
                                           positive=True)
        sampling_prior: str = option(DEFAULT_SAMPLING_PRIOR, "where samples draw z from: "
                                     + "; ".join(f"{k}: {v}" for k, v in SAMPLING_PRIORS.items()),
                                     choices=tuple(SAMPLING_PRIORS))
        prior_components: int = option(PRIOR_COMPONENTS, "--sampling-prior mixture: C components fitted to "
                                       "the codes (0: N(0, I))", metavar="C", low=0)

    @classmethod
    def from_options(cls, event_shape, options):
        window, features = sequence_shape(event_shape, cls.name)
        return cls(features, window, options.latent_dim, options.hidden, options.trend_poly, options.seasonality,
                   residual=options.residual, likelihood=options.likelihood, recon_weight=options.recon_weight,
                   noise_scale=options.noise_scale, local_level=options.local_level,
                   ar_order=options.ar_order, sampling_prior=options.sampling_prior,
                   prior_components=options.prior_components)

    def __init__(
        self,
        num_features: int,
        window: int,
        latent_dim: int = 8,
        hidden: Sequence[int] = DEFAULT_HIDDEN,
        trend_degree: int = 0,
        seasonality=(),
        level: bool | None = None,
        residual: bool = True,
        likelihood: str | None = None,
        recon_weight: float | None = None,
        noise_scale: float | None = None,
        local_level: bool = False,
        ar_order: int = 0,
        sample_noise: bool | None = None,
        sampling_prior: str = DEFAULT_SAMPLING_PRIOR,
        prior_components: int = PRIOR_COMPONENTS,
        noise_warmup: int = NOISE_WARMUP,
    ):
        hidden = tuple(int(h) for h in hidden)
        if num_features < 1 or window < 1:
            raise ValueError(f"windows need T >= 1 steps of D >= 1 features, got T={window}, D={num_features}")
        if latent_dim < 1:
            raise ValueError(f"latent dimension must be at least 1, got {latent_dim}")
        if not hidden or min(hidden) < 1:
            raise ValueError(f"hidden channel sizes must be positive integers, got {list(hidden)}")
        if likelihood is None:
            if recon_weight is not None or noise_scale is not None:  # the paper's recipe asked for
                likelihood = "gaussian-fixed"
            else:  # state blocks model the noise's memory themselves
                likelihood = "gaussian-feature" if local_level or ar_order else DEFAULT_LIKELIHOOD
        if likelihood not in NOISE_MODELS:
            raise ValueError(f"TimeVAE takes the likelihood {', '.join(NOISE_MODELS)}; not {likelihood!r}")
        if sampling_prior not in SAMPLING_PRIORS:
            raise ValueError(f"TimeVAE's sampling prior is one of {', '.join(SAMPLING_PRIORS)}; not {sampling_prior!r}")
        if likelihood == "gaussian-correlated" and (local_level or ar_order):
            raise ValueError("the gaussian-correlated likelihood does not combine with the local-level or AR blocks; "
                             "choose one way to model correlated noise")
        check_conv_window(window, len(hidden))
        super().__init__()
        self.event_shape = (int(window), int(num_features))
        self.latent_dim = latent_dim
        self.hidden = hidden
        recon_weight = DEFAULT_RECON_WEIGHT if recon_weight is None else recon_weight
        self.recon_weight = recon_weight
        scale = noise_scale_for_weight(recon_weight) if noise_scale is None else noise_scale
        self.input_scaler = FeatureScaler(num_features)

        blocks: dict[str, nn.Module] = {}
        seasonality = parse_seasonality(seasonality)
        if level is None:
            level = bool(trend_degree or seasonality or local_level)
        if level:
            blocks["level"] = Level(latent_dim, window, num_features)
        if trend_degree:
            blocks["trend"] = Trend(latent_dim, window, num_features, trend_degree)
        for j, (seasons, steps) in enumerate(seasonality):
            blocks[f"seasonal_{j}"] = Seasonal(latent_dim, window, num_features, seasons, steps)
        self.states = StateBlocks(window, num_features, local_level, ar_order) if local_level or ar_order else None
        self.blocks = nn.ModuleDict(blocks)

        self.residual = residual
        if residual:
            self.encoded_length = strided_length(window, len(hidden))
            self.dense = nn.Linear(latent_dim, hidden[-1] * self.encoded_length)
            channels = hidden[::-1] + hidden[:1]
            layers: list[nn.Module] = []
            for c_in, c_out in zip(channels[:-1], channels[1:]):
                layers += [nn.ConvTranspose1d(c_in, c_out, 3, stride=2, padding=1, output_padding=1), nn.ReLU()]
            self.deconv = nn.Sequential(*layers)
        self.noise_model = likelihood
        self.sample_noise = likelihood != "gaussian-fixed" if sample_noise is None else bool(sample_noise)
        self.emission = Emission(hidden[0] if residual else 1, (num_features,),
                                 "gaussian" if likelihood == "gaussian" else "gaussian-fixed", scale)
        if int(prior_components) != prior_components or prior_components < 0:
            raise ValueError(f"prior_components must be a non-negative integer, got {prior_components}")
        self.sampling_prior_kind = "normal" if sampling_prior == "mixture" and not prior_components else sampling_prior
        self.sampling_prior = GaussianMixture(latent_dim, int(prior_components), "full", restarts=3) \
            if self.sampling_prior_kind == "mixture" else None
        if self.sampling_prior_kind == "aggregate":  # posteriors (loc, Cholesky factor) of up to AGGREGATE_WINDOWS windows
            self.register_buffer("posterior_loc", torch.zeros(AGGREGATE_WINDOWS, latent_dim))
            self.register_buffer("posterior_tril", torch.zeros(AGGREGATE_WINDOWS, latent_dim, latent_dim))
            self.register_buffer("posterior_count", torch.tensor(0))
        self.register_buffer("prior_fitted", torch.tensor(False))
        self.noise_warmup = int(noise_warmup)
        self.register_buffer("noise_steps", torch.tensor(0))
        if likelihood in LEARNED_NOISE:
            shape = (window, num_features) if likelihood == "gaussian-step" else (num_features,)
            # sigma = MIN_NOISE + exp(NOISE_RATE log_noise), started at the data's sd by :meth:`initialize`
            self.log_noise = nn.Parameter(torch.full(shape, math.log(scale) / NOISE_RATE))
        if likelihood == "gaussian-correlated":  # both start at independent noise (:meth:`noise_process`)
            self.noise_correlation = nn.Parameter(torch.zeros(num_features, num_features))
            self.noise_memory = nn.Parameter(torch.zeros(num_features))

    @property
    def window(self) -> int:
        return self.event_shape[0]

    @property
    def interpretable(self) -> bool:
        return bool(len(self.blocks))

    def features(self, z, steps=None):
        """Per-step decoder features (B, T, hidden[0]) of the residual decoder (ones without it)."""
        if not self.residual:
            return z.new_ones(z.shape[0], self.window, 1)
        h = torch.relu(self.dense(z)).reshape(z.shape[0], self.hidden[-1], self.encoded_length)
        return self.deconv(h)[:, :, : self.window].transpose(1, 2)

    def block_outputs(self, z) -> dict[str, torch.Tensor]:
        """Each interpretable block's contribution (B, T, D) on the scaled data."""
        return {name: block(z) for name, block in self.blocks.items()}

    def _warm(self, parameter: torch.Tensor) -> torch.Tensor:
        """A noise parameter, held during the warm-up: in the graph, with a zero gradient."""
        if int(self.noise_steps) < self.noise_warmup:
            return 0 * parameter + parameter.detach()
        return parameter

    def noise_scale(self) -> torch.Tensor | None:
        """The learned sigma on the scaled data, (D,) or (T, D) (``gaussian-correlated``: the sd of
        each feature's innovation v_td); None unless it is a parameter."""
        if self.noise_model not in LEARNED_NOISE:
            return None
        return MIN_NOISE + (NOISE_RATE * self._warm(self.log_noise)).exp()

    def noise_process(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``gaussian-correlated``: the Cholesky factor L (D, D) of the innovations' covariance and
        the AR(1) coefficients rho (D,) of :class:`CorrelatedNoiseGaussian`, on the scaled data.

        L = diag(sigma) R with R = M / (the norm of each row of M), M = I + strictly-lower(NOISE_RATE
        * the correlation parameter): R R^T is a correlation matrix, so sigma_d stays each
        innovation's sd and the correlations are free of the data's scale. rho = MAX_NOISE_AR
        tanh(NOISE_RATE * the memory parameter). Both start at 0 (independent white noise) and are
        held, like sigma, during the warm-up."""
        lower = torch.tril(NOISE_RATE * self._warm(self.noise_correlation), -1)
        m = lower + torch.eye(lower.shape[0], dtype=lower.dtype, device=lower.device)
        tril = self.noise_scale()[:, None] * m / m.norm(dim=-1, keepdim=True)
        return tril, MAX_NOISE_AR * torch.tanh(NOISE_RATE * self._warm(self.noise_memory))

    def likelihood(self, z, steps=None):
        """p(x | z) on the original scale, batch shape (B, T, D): elementwise Normal, or with state
        blocks the :class:`TemporalGaussian` whose covariance over time adds theirs to the noise's."""
        scaled = self._scaled(z)
        span = self.input_scaler.span
        loc = self.input_scaler.inverse(scaled.loc)
        if isinstance(scaled, CorrelatedNoiseGaussian):
            return CorrelatedNoiseGaussian(loc, span[:, None] * scaled.scale_tril, scaled.rho)
        if self.states is None:
            return dist.Normal(loc, scaled.scale * span)
        return TemporalGaussian(loc, self._scaled_tril(scaled) * span[:, None, None])

    def _scaled(self, z):
        """p(u | z) of the deterministic blocks and the residual decoder on the scaled data."""
        parts = self.block_outputs(z)
        offset = sum(parts.values()) if parts else None
        scaled = self.emission(self.features(z), offset)
        if self.noise_model not in LEARNED_NOISE:
            return scaled
        if self.noise_model == "gaussian-correlated":  # its process holds the learned scales
            noise = CorrelatedNoiseGaussian(scaled.loc, *self.noise_process())
        else:
            noise = dist.Normal(scaled.loc, self.noise_scale().expand(scaled.loc.shape))
        if torch.is_grad_enabled():  # a training step
            self.noise_steps += 1
        return noise

    def _scaled_tril(self, scaled) -> torch.Tensor:
        """Cholesky factor (B, D, T, T) of the states' covariance plus the noise's, scaled data."""
        noise = torch.diag_embed(scaled.scale.transpose(-1, -2) ** 2)
        return torch.linalg.cholesky(noise + sum(self.states.covariances().values()))

    @torch.no_grad()
    def fit_sampling_prior(self, x, guide, mask=None, max_iter: int = 200, tol: float = 1e-4) -> bool:
        """Fit the sampling prior to the posteriors q(z | x_i) of the windows of x (N, T, D).

        ``aggregate``: keep the mean and Cholesky factor of q(z | x_i) for every window (a random
        subset of :data:`AGGREGATE_WINDOWS` when there are more). ``mixture``: EM on one draw
        z_i ~ q(z | x_i) per window until the log-likelihood per code changes by less than ``tol``.
        Returns whether it was fitted: not for ``normal``, not with fewer than
        :data:`PRIOR_ROWS_PER_COMPONENT` windows per component, or when a covariance cannot be
        factorised (z then stays N(0, I))."""
        if self.sampling_prior_kind == "normal":
            return False
        x = torch.as_tensor(x, dtype=self.dtype, device=self.device)
        mask = None if mask is None else torch.as_tensor(mask, device=self.device)
        if self.sampling_prior_kind == "aggregate":
            keep = torch.randperm(len(x), device=x.device)[:AGGREGATE_WINDOWS]
            x, mask = x[keep], None if mask is None else mask[keep]
        posteriors = [guide.distribution(x[i : i + 1024], None if mask is None else mask[i : i + 1024])
                      for i in range(0, len(x), 1024)]
        fitted = self._keep_posteriors(posteriors) if self.sampling_prior_kind == "aggregate" \
            else self._fit_mixture(torch.cat([q.sample() for q in posteriors]), max_iter, tol)
        self.prior_fitted.fill_(fitted)
        return fitted

    def _keep_posteriors(self, posteriors) -> bool:
        """Store each window's q(z | x_i) mean and Cholesky factor for the aggregate posterior."""
        n = sum(len(q.mean) for q in posteriors)
        self.posterior_loc[:n] = torch.cat([q.mean for q in posteriors])
        self.posterior_tril[:n] = torch.cat([posterior_tril(q) for q in posteriors])
        self.posterior_count.fill_(n)
        return n > 0

    def _fit_mixture(self, codes, max_iter: int, tol: float) -> bool:
        """EM of the mixture sampling prior on codes (N, K); False when too few or degenerate."""
        if len(codes) < PRIOR_ROWS_PER_COMPONENT * self.sampling_prior.components:
            return False
        try:
            self.sampling_prior.initialize(codes)
            previous = -math.inf
            for _ in range(max_iter):
                total = self.sampling_prior.em_step(codes)
                if total - previous < tol * len(codes):
                    break
                previous = total
        except torch.linalg.LinAlgError:  # a degenerate component: keep N(0, I)
            return False
        return True

    @torch.no_grad()
    def sample_latent(self, n: int) -> torch.Tensor:
        """n latents (n, K): from the fitted sampling prior, else from N(0, I). The aggregate
        posterior draws a kept window i uniformly, then z = mu_i + L_i eps, eps ~ N(0, I)."""
        if self.sampling_prior_kind == "normal" or not bool(self.prior_fitted):
            return super().sample_latent(n)
        if self.sampling_prior_kind == "mixture":
            return self.sampling_prior.sample(n).to(self.dtype)
        pick = torch.randint(int(self.posterior_count), (n,), device=self.device)
        eps = torch.randn(n, self.latent_dim, 1, device=self.device, dtype=self.dtype)
        return self.posterior_loc[pick] + (self.posterior_tril[pick] @ eps).squeeze(-1)

    def check_shape(self, x):
        if x.ndim != 3 or tuple(x.shape[1:]) != self.event_shape:
            raise ValueError(
                f"TimeVAE expects windows of shape (N, {self.window}, {self.event_shape[1]}), got data of shape "
                f"{tuple(x.shape)}"
            )
        if not torch.jit.is_tracing() and torch.isnan(x).any():
            raise ValueError("TimeVAE windows contain NaN values; it takes complete windows only")

    @torch.no_grad()
    def initialize(self, x, mask=None) -> None:
        """Learn the per-feature min and range, then start the output at the scaled data's mean."""
        self.check_shape(x)
        if (self.states is not None or self.noise_model == "gaussian-correlated") and mask is not None \
                and not bool(torch.as_tensor(mask).all()):
            raise ValueError("TimeVAE's local-level and AR blocks and its gaussian-correlated likelihood need "
                             "complete windows (no missing values)")
        self.input_scaler.fit(x, mask)
        scaled = self.input_scaler(x)
        self.emission.initialize(scaled, mask)
        if self.noise_scale() is not None:  # start each sigma sharp: NOISE_START, or the sd if smaller
            m = torch.ones_like(scaled) if mask is None else mask.to(scaled.dtype)
            dims = (0, 1) if self.log_noise.ndim == 1 else (0,)
            count = m.sum(dims).clamp(min=1)
            mean = (scaled * m).sum(dims) / count
            sd = ((((scaled - mean) ** 2) * m).sum(dims) / count).sqrt().clamp(max=NOISE_START)
            self.log_noise.copy_((sd - MIN_NOISE).clamp(min=MIN_NOISE).log() / NOISE_RATE)

    @torch.no_grad()
    def decompose(self, x, guide) -> dict[str, torch.Tensor]:
        """Each block's part of the reconstruction E[x | z = E_q[z | x]], on the original scale.

        Returns a dict of (B, T, D) tensors: ``level`` (holding the feature minimum, so the parts
        add up), ``trend``, ``seasonal_0``, ... and ``residual`` (the emission's output: the
        convolutional decoder, or a per-feature constant without it); their sum is
        :meth:`reconstruct`. With state blocks, their smoothed means given x and z,
        E[s | x, z] = Sigma_s Sigma^-1 (x - E[x | z]) per feature (Gaussian conditioning): ``ar``,
        and ``local_level`` = the level block's start plus the smoothed random walk (replacing
        ``level``). With state blocks and no residual decoder z is the exact posterior mean
        (:meth:`exact_latent`), not the guide's, so the parts are the joint smoother E[. | x].
        """
        z = self.exact_latent(x) if self.states is not None and not self.residual else guide.encode(x)
        span = self.input_scaler.span
        parts = {name: part * span for name, part in self.block_outputs(z).items()}
        residual = self.emission(self.features(z)).loc * span
        if "level" in parts:
            parts["level"] = parts["level"] + self.input_scaler.low
        else:
            residual = residual + self.input_scaler.low
        parts["residual"] = residual
        if self.states is not None:
            scaled = self._scaled(z)
            resid = (self.input_scaler(x) - scaled.loc).transpose(-1, -2).unsqueeze(-1)  # (B, D, T, 1)
            weights = torch.cholesky_solve(resid, self._scaled_tril(scaled))  # Sigma^-1 (u - mean)
            for name, cov in self.states.covariances().items():
                parts[name] = (cov @ weights).squeeze(-1).transpose(-1, -2) * span
            if "local_level" in parts:
                parts["local_level"] = parts.pop("level") + parts["local_level"]
        return parts

    def _affine(self):
        """E[u | z] = m + W z and the states-plus-noise Cholesky factor, when the mean is affine in z
        (state blocks, no residual decoder): m (D, T), W (D, T, K), tril (D, T, T) on the scaled data."""
        if self.states is None or self.residual:
            raise ValueError("the exact posterior needs state blocks and no residual decoder (a mean affine in z)")
        basis = torch.cat([torch.zeros(1, self.latent_dim), torch.eye(self.latent_dim)]).to(self.input_scaler.span)
        scaled = self._scaled(basis)
        m = scaled.loc[0].T
        # the noise does not depend on z without the residual decoder
        return m, scaled.loc[1:].permute(2, 1, 0) - m[..., None], self._scaled_tril(scaled)[0]

    @torch.no_grad()
    def exact_latent(self, x) -> torch.Tensor:
        """E[z | x] (B, K) when the mean is affine in z (:meth:`_affine`): with Sigma_d the (T, T)
        covariance of feature d (states plus noise), z | x is Gaussian with precision
        P = I + sum_d W_d^T Sigma_d^-1 W_d and mean P^-1 sum_d W_d^T Sigma_d^-1 (u_d - m_d)."""
        m, w, tril = self._affine()
        resid = self.input_scaler(x).permute(2, 1, 0) - m[..., None]  # (D, T, B)
        sw = torch.cholesky_solve(w, tril)  # Sigma_d^-1 W_d
        precision = torch.eye(self.latent_dim).to(x) + (w.mT @ sw).sum(0)
        return torch.linalg.solve(precision, (sw.mT @ resid).sum(0)).T

    def exact_log_prob(self, x) -> torch.Tensor:
        """log p(x) per window (B,), z and the states summed out, when the mean is affine in z: the
        features stacked, x ~ N(m, W W^T + blockdiag(Sigma_d)) on the scaled data, less sum log span."""
        m, w, tril = self._affine()
        d, t, k = w.shape
        cov = w.reshape(d * t, k) @ w.reshape(d * t, k).T + torch.block_diag(*(f @ f.T for f in tril))
        u = self.input_scaler(x).transpose(1, 2).reshape(x.shape[0], d * t)
        return dist.MultivariateNormal(m.reshape(-1), cov).log_prob(u) - t * self.input_scaler.span.log().sum()

    @torch.no_grad()
    def share_noise(self, fraction: float) -> None:
        """Move ``fraction`` of the mean noise variance v into the state blocks (AR: r = f v; walk:
        q = f v / T) and keep (1 - f) of it as noise. A fit from the 1e-6 start lets the noise take
        what the states should: the likelihood then falls if either grows alone."""
        if not 0 < fraction < 1 or self.states is None or self.emission.likelihood != "gaussian":
            raise ValueError(f"share_noise needs state blocks, a learned noise scale and a fraction in (0, 1), got {fraction}")
        scale = self.emission.scale
        var = (nn.functional.softplus(scale.bias) + self.emission.min_scale) ** 2
        v = float(var.mean())
        if self.states.ar_order:
            self.states.ar_log_var.fill_(math.log(fraction * v))
        if self.states.local_level:
            self.states.level_log_var.fill_(math.log(fraction * v / self.window))
        kept = ((1 - fraction) * var).sqrt() - self.emission.min_scale
        scale.bias.copy_(kept + torch.log(-torch.expm1(-kept)))  # inverse softplus

    @torch.no_grad()
    def reconstruct(self, x, guide, mask=None) -> torch.Tensor:
        """E[x | z = E_q[z | x]], plus with state blocks their smoothed values E[l + a | x, z]."""
        if self.states is None:
            return super().reconstruct(x, guide, mask)
        return sum(self.decompose(x, guide).values())
