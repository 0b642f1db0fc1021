"""Forecasts and imputation from a fitted latent model (§6.7), and how to score them.

Every forecast here is an imputation: the entries to predict are marked missing (``mask`` False;
a forecast of horizon h masks the last h steps of each window, :func:`forecast_mask`) and drawn
from the model's predictive distribution p(x_mis | x_obs), so one routine, :func:`predict`,
does both. Three ways, exact where the model allows:

* linear-Gaussian models (FA, PPCA): x ~ N(mu, Sigma), Sigma = Lambda Lambda^T + Psi (eq. 6.2
  marginal), so x_mis | x_obs ~ N(mu_m + S_mo S_oo^-1 (x_o - mu_o), S_mm - S_mo S_oo^-1 S_om);
* the Gaussian HMM: smoothed state marginals p(z_t | x_obs) by forward-backward with the
  missing steps' emissions left out, then x_t | z_t from the state's Gaussian. Draws are exact
  per step (the marginal of each entry, which is what CRPS and interval coverage score), not
  joint paths; an entry missing beside observed entries of the same step is drawn from the
  state's full Gaussian, not its conditional;
* decoder models (VAE, VRAE, TimeVAE): importance sampling of the posterior over z from the
  observed part only. Weights w_k = p(z_k) p(x_obs | z_k) / r(z_k), where the missing entries
  are masked out of the likelihood (with noise dependent within a window, TimeVAE's default,
  p(x_obs | z) is the observed entries' Gaussian marginal, and the missing entries are drawn from
  their Gaussian conditional on the observed ones, so an AR noise goes on from where it was); the proposal r starts at the guide's q(z | x) with the
  missing entries filled (the last observed value of a series, else the column mean), widened,
  mixed with the prior, and is moved to the weighted moments for a few rounds (adaptive
  importance sampling). z is resampled by the final weights and x_mis ~ p(x | z), noise
  included. The effective sample size (sum w)^2 / sum w^2 is reported per row.

Scores: the continuous ranked probability score of a predictive sample (the unbiased "fair"
form), CRPS = E|X - y| - (1/2) E|X - X'| over independent draws, its closed form for a Gaussian
(Gneiting & Raftery 2007), and the coverage of central intervals. Naive baselines give
predictive samples in the same form: the random walk, the window's historical mean and a
vector autoregression fitted by least squares.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy.stats import norm

from ..models.base import Marginalized, local_params, placement
from ..models.decoders import DecoderModel
from ..models.factor import FactorAnalysis
from ..models.hmm import GaussianHMM

from .data import as_observations

DEFENSIVE = 0.1  # prior's share of the importance proposal
WIDEN = 1.5  # proposal sd / guide (or weighted) sd


@dataclass
class Predictive:
    """Draws from p(x_mis | x_obs): ``samples`` (S, B, *event), equal to the data where observed;
    ``mask`` (B, *event) True = observed; ``method``; ``ess`` (B,) importance sampling's effective
    sample size (None where the draws are exact)."""

    samples: np.ndarray
    mask: np.ndarray
    method: str
    ess: np.ndarray | None = None

    def quantiles(self, probs) -> np.ndarray:
        """Quantiles of the draws, (len(probs), B, *event)."""
        return np.quantile(self.samples, np.asarray(probs, dtype=float), axis=0)


def forecast_mask(shape, horizon: int, mask=None) -> torch.Tensor:
    """The mask of a forecast: windows of ``shape`` (B, T, D) with their last ``horizon`` steps
    missing (and whatever ``mask`` already marks missing)."""
    if len(shape) != 3:
        raise ValueError(f"a forecast needs windows (N, T, D), got data of shape {tuple(shape)}; "
                         "a model of table rows imputes missing entries instead (no --horizon)")
    steps = shape[1]
    if int(horizon) != horizon or not 1 <= horizon < steps:
        raise ValueError(f"the horizon must be a whole number of steps from 1 to {steps - 1} "
                         f"(the window has {steps}), got {horizon}")
    out = torch.ones(shape, dtype=torch.bool) if mask is None else torch.as_tensor(mask, dtype=torch.bool).clone()
    out[:, steps - int(horizon):] = False
    return out


def _base(model):
    return model.base if isinstance(model, Marginalized) else model


def forecast_method(model) -> str:
    """How :func:`predict` draws for ``model``: ``gaussian``, ``hmm`` or ``importance``; a
    one-line ValueError for a model it cannot predict with."""
    base = _base(model)
    name = type(base).__name__
    if isinstance(base, GaussianHMM):
        return "hmm"
    if isinstance(base, FactorAnalysis) and not base.bayesian:  # linear-Gaussian: x ~ N(mu, Sigma)
        return "gaussian"
    if isinstance(base, DecoderModel):
        if getattr(base, "states", None) is not None:
            raise ValueError(f"{name} with local-level or AR state blocks does not forecast: its steps are "
                             "not independent given z")
        if getattr(base.emission, "likelihood", None) == "bernoulli":
            raise ValueError(f"{name} with a Bernoulli likelihood does not forecast (binary data); "
                             "use a Gaussian likelihood")
        return "importance"
    raise ValueError(f"{name} cannot forecast or impute: use fa, ppca, hmm, vae, vrae or timevae")


def _gaussian_draws(loc, cov, x, mask, num_samples: int) -> torch.Tensor:
    """Exact conditional draws (S, B, D) of rows x (B, D) under N(loc, cov), grouped by missing
    pattern; loc (D,) for every row or (B, D), a mean per row."""
    out = x.expand(num_samples, *x.shape).clone()
    loc = loc.expand(x.shape)
    patterns, group = torch.unique(mask, dim=0, return_inverse=True)
    for j, seen in enumerate(patterns):
        if seen.all():
            continue
        rows = torch.nonzero(group == j).squeeze(-1)
        o, m = torch.nonzero(seen).squeeze(-1), torch.nonzero(~seen).squeeze(-1)
        if len(o):
            chol = torch.linalg.cholesky(cov[o][:, o])
            gain = torch.cholesky_solve(cov[o][:, m], chol)  # S_oo^-1 S_om, (O, M)
            mean = loc[rows][:, m] + (x[rows][:, o] - loc[rows][:, o]) @ gain
            var = cov[m][:, m] - cov[m][:, o] @ gain
        else:
            mean, var = loc[rows][:, m], cov[m][:, m]
        tril = torch.linalg.cholesky(0.5 * (var + var.T))
        noise = torch.randn(num_samples, len(rows), len(m), dtype=x.dtype, device=x.device)
        out[:, rows.unsqueeze(-1), m] = mean + noise @ tril.T
    return out


def _gaussian_observed_log_prob(loc, cov, x, mask) -> torch.Tensor:
    """log N(x_o; loc_o, cov_oo) per row (B,) of rows x, loc (B, D), grouped by missing pattern."""
    out = x.new_zeros(len(x))
    patterns, group = torch.unique(mask, dim=0, return_inverse=True)
    for j, seen in enumerate(patterns):
        rows, o = torch.nonzero(group == j).squeeze(-1), torch.nonzero(seen).squeeze(-1)
        if len(o):
            chol = torch.linalg.cholesky(cov[o][:, o])
            out[rows] = torch.distributions.MultivariateNormal(loc[rows][:, o], scale_tril=chol).log_prob(x[rows][:, o])
    return out


def _hmm_draws(model, x, mask, num_samples: int) -> torch.Tensor:
    """Per-step draws (S, N, T, D): z_t ~ p(z_t | x_obs), then x_t ~ N(mu_z, Sigma_z)."""
    with local_params():
        marginals = model.posterior(x, mask)  # (N, T, K)
        states = torch.distributions.Categorical(probs=marginals.clamp(min=0)).sample((num_samples,))
        draws = model.gaussians.sample(states.reshape(-1, x.shape[1])).reshape(num_samples, *x.shape)
    return torch.where(mask, x, draws.to(x.dtype))


def _filled(x, mask) -> torch.Tensor:
    """Missing entries replaced by the last observed value of their series (forward fill over
    time, dim 1) where there is one, else by their column's observed mean."""
    x = torch.where(mask, x, torch.nan)
    if x.ndim == 3:
        for t in range(1, x.shape[1]):
            x[:, t] = torch.where(torch.isnan(x[:, t]), x[:, t - 1], x[:, t])
    flat = x.reshape(-1, x.shape[-1])
    column = torch.nanmean(flat, 0).nan_to_num(0.0)
    return torch.where(torch.isnan(x), column, x)


def _observed_log_joint(model, z, x, mask) -> torch.Tensor:
    """log p(z) + sum over observed entries of log p(x | z): z (K, B, Z) -> (K, B)."""
    k, b = z.shape[:2]
    px = model.likelihood(z.reshape(k * b, -1), model._steps(x))
    xs, masks = _repeated(x, k), _repeated(mask, k)
    prior = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1)
    if hasattr(px, "window_covariance"):  # noise dependent within a window: the observed entries' marginal
        flat = px.mean.reshape(k * b, -1)
        return _gaussian_observed_log_prob(flat, px.window_covariance(), xs.reshape(k * b, -1),
                                           masks.reshape(k * b, -1)).reshape(k, b) + prior
    terms = torch.where(masks, px.log_prob(xs), 0.0)
    return terms.reshape(k, b, -1).sum(-1) + prior


def _repeated(x, k: int) -> torch.Tensor:
    """x (B, ...) stacked k times along rows: (k B, ...)."""
    return x.repeat(k, *([1] * (x.ndim - 1)))


def _likelihood_draws(model, z, x, mask) -> torch.Tensor:
    """x ~ p(x | z) for latents z (S, B, Z), shape (S, B, *event); with noise dependent within a
    window, its missing entries from their conditional given the observed ones' residuals."""
    s, b = z.shape[:2]
    px = model.likelihood(z.reshape(s * b, -1), model._steps(x))
    if not hasattr(px, "window_covariance"):
        return px.sample().reshape(s, *x.shape)
    draws = _gaussian_draws(px.mean.reshape(s * b, -1), px.window_covariance(), _repeated(x, s).reshape(s * b, -1),
                            _repeated(mask, s).reshape(s * b, -1), 1)[0]
    return draws.reshape(s, *x.shape)


def _proposal_log_prob(z, loc, scale) -> torch.Tensor:
    """log of the defensive mixture (1 - e) N(loc, scale^2) + e N(0, I) at z (K, B, Z) -> (K, B)."""
    near = torch.distributions.Normal(loc, scale).log_prob(z).sum(-1)
    prior = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1)
    return torch.logaddexp(near + math.log1p(-DEFENSIVE), prior + math.log(DEFENSIVE))


def _proposal_draw(loc, scale, num: int) -> torch.Tensor:
    near = loc + scale * torch.randn(num, *loc.shape, dtype=loc.dtype, device=loc.device)
    prior = torch.randn_like(near)
    pick = torch.rand(num, loc.shape[0], 1, device=loc.device) < DEFENSIVE
    return torch.where(pick, prior, near)


def _importance_draws(model, guide, x, mask, num_samples: int, particles: int, rounds: int):
    """(draws (S, B, *event), ess (B,)) by adaptive importance sampling of z (module docstring)."""
    local = getattr(guide, "local_guide", None) or guide
    if not hasattr(local, "distribution"):
        raise ValueError("the run's guide has no amortized q(z|x) to start the importance sampler from")
    q = local.distribution(_filled(x, mask), mask)
    loc, scale = q.mean, WIDEN * q.variance.sqrt()
    for step in range(rounds):
        z = _proposal_draw(loc, scale, particles)  # (K, B, Z)
        log_w = _observed_log_joint(model, z, x, mask) - _proposal_log_prob(z, loc, scale)
        w = torch.softmax(log_w, 0).unsqueeze(-1)  # (K, B, 1)
        if step < rounds - 1:
            loc = (w * z).sum(0)
            sd = ((w * (z - loc) ** 2).sum(0)).sqrt()
            scale = WIDEN * torch.maximum(sd, 0.05 * scale)
    w = w.squeeze(-1)
    ess = 1.0 / (w ** 2).sum(0)
    pick = torch.multinomial(w.T, num_samples, replacement=True).T  # (S, B)
    chosen = torch.gather(z, 0, pick.unsqueeze(-1).expand(-1, -1, z.shape[-1]))
    return torch.where(mask, x, _likelihood_draws(model, chosen, x, mask)), ess


@torch.no_grad()
def predict(model, guide, x, mask, num_samples: int = 200, particles: int = 256, rounds: int = 3,
            batch_size: int = 128) -> Predictive:
    """Draws of the missing entries of ``x`` (B, *event) given its observed ones (``mask`` True):
    a :class:`Predictive` with ``num_samples`` draws (module docstring for the three methods;
    ``particles`` and ``rounds`` set the importance sampler)."""
    if num_samples < 2:
        raise ValueError(f"a predictive distribution needs at least 2 draws, got {num_samples}")
    if particles < 1 or rounds < 1:
        raise ValueError(f"the importance sampler needs particles >= 1 and rounds >= 1, got {particles}, {rounds}")
    method = forecast_method(model)
    base = _base(model)
    device, dtype = placement(model)
    x, mask = as_observations(x, mask, dtype=dtype, device=device)
    if mask is None:
        mask = torch.ones_like(x, dtype=torch.bool)
    x = torch.where(mask, x, 0.0)
    if method == "gaussian":
        draws = _gaussian_draws(base.loc, base.covariance(), x, mask, num_samples)
        return Predictive(draws.cpu().numpy(), mask.cpu().numpy(), "exact conditional Gaussian")
    if method == "hmm":
        draws = _hmm_draws(base, x, mask, num_samples)
        return Predictive(draws.cpu().numpy(), mask.cpu().numpy(), "exact per-step (forward-backward)")
    parts, ess = [], []
    for start in range(0, x.shape[0], batch_size):
        d, e = _importance_draws(base, guide, x[start:start + batch_size], mask[start:start + batch_size],
                                 num_samples, particles, rounds)
        parts.append(d.cpu())
        ess.append(e.cpu())
    return Predictive(torch.cat(parts, 1).numpy(), mask.cpu().numpy(),
                      f"importance sampling of z ({particles} particles, {rounds} rounds)",
                      torch.cat(ess).double().numpy())


# ----------------------------------------------------------------------------- scores
def crps_samples(samples, y) -> np.ndarray:
    """CRPS of a predictive sample (S, ...) at outcomes y (...): the fair estimator
    mean_i |x_i - y| - sum_{i != j} |x_i - x_j| / (2 S (S - 1)), with the pair sum from the
    sorted draws, sum_{i<j} (x_(j) - x_(i)) = sum_i (2i - S - 1) x_(i) (i = 1..S)."""
    x = np.asarray(samples, dtype=float)
    y = np.asarray(y, dtype=float)
    s = x.shape[0]
    if s < 2:
        raise ValueError("the CRPS of a sample needs at least 2 draws")
    spread = np.abs(x - y).mean(0)
    rank = (2 * np.arange(1, s + 1) - s - 1).reshape((s,) + (1,) * (x.ndim - 1))
    pairs = (rank * np.sort(x, axis=0)).sum(0)
    return spread - pairs / (s * (s - 1))


def crps_gaussian(loc, scale, y) -> np.ndarray:
    """Closed-form CRPS of N(loc, scale^2) at y: s [w (2 Phi(w) - 1) + 2 phi(w) - 1 / sqrt(pi)],
    w = (y - loc) / s."""
    scale = np.asarray(scale, dtype=float)
    w = (np.asarray(y, dtype=float) - loc) / scale
    return scale * (w * (2 * norm.cdf(w) - 1) + 2 * norm.pdf(w) - 1 / math.sqrt(math.pi))


def coverage(samples, y, level: float) -> float:
    """Share of outcomes y (...) inside the central ``level`` interval of the draws (S, ...)."""
    lo, hi = np.quantile(np.asarray(samples, dtype=float), [(1 - level) / 2, (1 + level) / 2], axis=0)
    y = np.asarray(y, dtype=float)
    return float(((lo <= y) & (y <= hi)).mean())


# ----------------------------------------------------------------------------- baselines
def random_walk(train, past, horizon: int, num_samples: int, rng) -> np.ndarray:
    """x_{t+j} = x_t + sum of j Gaussian steps, with the per-feature sd of the training windows'
    one-step changes. train (N, T, D), past (B, T0, D) -> draws (S, B, horizon, D)."""
    sd = np.diff(train, axis=1).reshape(-1, train.shape[-1]).std(0)
    steps = rng.standard_normal((num_samples, past.shape[0], horizon, past.shape[-1])) * sd
    return past[None, :, -1:, :] + steps.cumsum(2)


def historical_mean(train, past, horizon: int, num_samples: int, rng) -> np.ndarray:
    """x_{t+j} ~ N(mean of the window's observed steps, s_jd^2): s_jd is the sd about that mean
    of step j of the training windows' last ``horizon`` steps, per feature. -> (S, B, horizon, D)."""
    t0 = train.shape[1] - horizon
    sd = (train[:, t0:] - train[:, :t0].mean(1, keepdims=True)).std(0)  # (horizon, D)
    loc = past.mean(1, keepdims=True)
    return loc[None] + rng.standard_normal((num_samples, past.shape[0], horizon, past.shape[-1])) * sd


def fit_autoregression(train, order: int):
    """Least-squares VAR(p) on every step of the training windows (N, T, D):
    x_t = c + sum_{l=1..p} A_l x_{t-l} + e_t, e_t ~ N(0, Sigma). Returns (coef (1 + p D, D), chol of Sigma)."""
    n, t, d = train.shape
    if not 1 <= order < t:
        raise ValueError(f"the autoregression order must be from 1 to {t - 1}, got {order}")
    lags = [train[:, order - lag: t - lag] for lag in range(1, order + 1)]  # each (N, T - p, D)
    design = np.concatenate([np.ones((n, t - order, 1))] + lags, -1).reshape(-1, 1 + order * d)
    target = train[:, order:].reshape(-1, d)
    coef, *_ = np.linalg.lstsq(design, target, rcond=None)
    resid = target - design @ coef
    cov = np.cov(resid, rowvar=False).reshape(d, d) + 1e-12 * np.eye(d)
    return coef, np.linalg.cholesky(cov)


def autoregression(train, past, horizon: int, num_samples: int, rng, order: int = 3) -> np.ndarray:
    """Sample paths of the least-squares VAR(p) (:func:`fit_autoregression`) run on from each
    window's observed steps past (B, T0, D), T0 >= p -> (S, B, horizon, D)."""
    coef, chol = fit_autoregression(train, order)
    b, d = past.shape[0], past.shape[-1]
    history = np.broadcast_to(past[None, :, -order:], (num_samples, b, order, d)).copy()
    out = []
    for _ in range(horizon):
        lagged = [history[:, :, -lag] for lag in range(1, order + 1)]
        design = np.concatenate([np.ones((num_samples, b, 1))] + lagged, -1)
        step = design @ coef + rng.standard_normal((num_samples, b, d)) @ chol.T
        out.append(step)
        history = np.concatenate([history[:, :, 1:], step[:, :, None]], 2)
    return np.stack(out, 2)


BASELINES = {"random walk": random_walk, "historical mean": historical_mean, "linear AR(3)": autoregression}
