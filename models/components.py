"""Mixture components shared by the Gaussian mixture, the mixture of PPCA and the Gaussian HMM.

:class:`GaussianComponents` holds K Gaussian densities N(x; mu_k, Sigma_k) (full or diagonal
Sigma_k, maximum likelihood or with priors); the helpers here start them (k-means++ and Lloyd
iterations, the best of several restarts), compute the weighted moments of an EM M-step and
floor variances and probabilities so that collapsed components stay finite. models/mixture.py
(p(z) categorical) and models/hmm.py (p(z_t | z_t-1) Markov) both build on this module.
"""
from __future__ import annotations

import copy
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import pyro.distributions as dist
import torch
from pyro.nn import PyroModule, PyroParam, PyroSample
from torch.distributions import biject_to, constraints, transform_to, transforms

from .base import LocalParams, local_method
from .factor import linear_gaussian_log_prob
from .options import ModelOptions, option

#: added to every component variance (as scikit-learn's reg_covar): constant data or a component
#: that collapses on one point gives a finite, large density instead of NaN
VARIANCE_FLOOR = 1e-6
#: smallest mixture weight / transition probability an EM step sets (keeps them inside the simplex)
PROBABILITY_FLOOR = 1e-12
INIT_SUBSAMPLE = 2000  # rows used by k-means++ and Lloyd iterations in the start
LLOYD_ITERATIONS = 100  # at most, on the subsample (they stop when the centres stop moving)
RESTARTS_HELP = "k-means++ starts (EM: a short run from each, the best run continued; else the likeliest start)"
SELECTION_ROWS = 20_000  # observations (rows or time steps) on which best_of_restarts compares starts
#: rows an EM step handles at once (bounds the memory of its (rows, K, D) intermediates)
ROW_CHUNK = 32768
#: rows per block of the component densities (a (rows, K D) block stays in cache)
DENSITY_CHUNK = 4096


def check_components(k: int, rows: int | None = None, what: str = "components") -> None:
    """Clear errors for a bad number of components / states."""
    if int(k) != k or k < 1:
        raise ValueError(f"the number of {what} must be a positive integer, got {k}")
    if rows is not None and k > rows:
        raise ValueError(f"{k} {what} but only {rows} rows of data: use at most {rows}")


def relative_floor(x: torch.Tensor) -> torch.Tensor:
    """The variance floor for data x (..., D): VARIANCE_FLOOR (scikit-learn's reg_covar) times the
    mean variance of the features when that is below 1 (their mean square for constant data), so
    that data in small units (1e-3) are not flattened by a floor as large as their variances, and
    never more regularised than scikit-learn's fits."""
    flat = x.reshape(-1, x.shape[-1])
    scale = flat.var(0, unbiased=False).mean() if flat.shape[0] > 1 else flat.new_zeros(())
    scale = torch.where(scale > 0, scale, flat.pow(2).mean())
    return VARIANCE_FLOOR * torch.where(scale > 0, scale.clamp(max=1.0), torch.ones_like(scale))


class AboveFloor(constraints.Constraint):
    """value > owner.variance_floor, the bound read from the module whenever the constraint is
    used: a floor set from the data (:func:`relative_floor`), moved or loaded with the module's
    buffers, is always the one in force."""

    event_dim = 0

    def __init__(self, owner):
        super().__init__()
        self.owner = owner

    @property
    def lower_bound(self) -> torch.Tensor:
        return self.owner.variance_floor

    def check(self, value):
        return value > self.lower_bound


def _above_floor_transform(constraint: AboveFloor):
    return transforms.ComposeTransform([transforms.ExpTransform(), transforms.AffineTransform(constraint.lower_bound, 1.0)])


biject_to.register(AboveFloor, _above_floor_transform)
transform_to.register(AboveFloor, _above_floor_transform)


# ---------------------------------------------------------------------- initialisation helpers
def kmeans_plus_plus(x: torch.Tensor, k: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Greedy k-means++ seeding (Arthur and Vassilvitskii, 2007): k centres (k, D) from the rows of
    x (N, D).

    Each new centre is the best of 2 + floor(log k) candidate rows, drawn with probability
    proportional to their squared distance to the nearest centre so far (uniformly when every
    row sits on a centre, e.g. constant data): the one that leaves the smallest sum of squared
    distances. (Plain k-means++ often puts two seeds in one of two nearby clusters, and Lloyd
    iterations cannot separate them again.)
    """
    n = x.shape[0]
    trials = 2 + int(math.log(k))
    first = torch.randint(n, (1,), generator=generator).item()
    centres = [x[first]]
    nearest = (x - x[first]).pow(2).sum(-1)
    for _ in range(1, k):
        total = nearest.sum()
        probs = nearest / total if total > 0 else torch.full_like(nearest, 1.0 / n)
        picks = torch.multinomial(probs.cpu().float(), trials, replacement=True, generator=generator).to(x.device)
        candidates = torch.minimum(nearest, torch.cdist(x[picks], x).pow(2))  # (trials, N)
        best = int(candidates.sum(-1).argmin())
        centres.append(x[picks[best]])
        nearest = candidates[best]
    return torch.stack(centres)


def nearest_centre(x: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """Index (N,) of the closest of ``centres`` (K, D) to each row of x (N, D)."""
    return torch.cdist(x, centres).argmin(-1)


def lloyd(x: torch.Tensor, centres: torch.Tensor, iterations: int = 10) -> torch.Tensor:
    """A few Lloyd (k-means) iterations from ``centres``; empty clusters keep their centre."""
    for _ in range(iterations):
        labels = nearest_centre(x, centres)
        one_hot = torch.nn.functional.one_hot(labels, centres.shape[0]).to(x.dtype)
        counts = one_hot.sum(0)
        sums = one_hot.T @ x
        updated = torch.where(counts.unsqueeze(-1) > 0, sums / counts.clamp(min=1).unsqueeze(-1), centres)
        if torch.equal(updated, centres):
            break
        centres = updated
    return centres


def kmeans_start(x: torch.Tensor, k: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Hard responsibilities (N, K) from k-means++ and Lloyd iterations on a subsample of x."""
    sub = x
    if x.shape[0] > INIT_SUBSAMPLE:
        sub = x[torch.randperm(x.shape[0], generator=generator)[:INIT_SUBSAMPLE].to(x.device)]
    centres = lloyd(sub, kmeans_plus_plus(sub, k, generator), LLOYD_ITERATIONS)
    return torch.nn.functional.one_hot(nearest_centre(x, centres), k).to(x.dtype)


def each_start(restarts: int, start) -> Iterator[int]:
    """Call ``start(generator)`` (which sets the model's parameters) ``restarts`` times, yielding the
    restart's index after each; one generator, seeded from torch's global one, drives them all."""
    generator = torch.Generator().manual_seed(int(torch.randint(2**31 - 1, ()).item()))
    for index in range(restarts):
        start(generator)
        yield index


def selection_rows(x, mask, limit: int = SELECTION_ROWS):
    """x and mask (None stays None) cut to at most ``limit`` observations, on which starts are
    compared: random rows of a table (N, D); for sequences (N, T, D), random whole sequences, or
    a random window of ``limit`` steps when one sequence is longer. All of x when it is smaller."""
    steps = x.shape[1] if x.dim() == 3 else 1
    if x.shape[0] * steps <= limit:
        return x, mask
    generator = torch.Generator().manual_seed(int(torch.randint(2**31 - 1, ()).item()))
    rows = torch.randperm(x.shape[0], generator=generator)[:max(1, limit // steps)].to(x.device)
    x, mask = x[rows], None if mask is None else mask[rows]
    if steps > limit:
        first = int(torch.randint(steps - limit + 1, (), generator=generator))
        x, mask = x[:, first:first + limit], None if mask is None else mask[:, first:first + limit]
    return x, mask


def best_of_restarts(model, x, mask, starts: Iterable, score=None) -> None:
    """Of the states ``starts`` sets the model to in turn (e.g. :meth:`starts` of a mixture), keep
    the one with the highest exact log-likelihood ``model.log_marginal(x, mask).sum()`` (on
    :func:`selection_rows`), or the highest ``score(x)`` if given (the same total computed faster,
    or the end of a short EM run from the start, which may move the model)."""
    x, mask = selection_rows(x, mask)
    best_value, best_state = -math.inf, None
    for _ in starts:
        value = float(model.log_marginal(x, mask).sum() if score is None else score(x))
        if best_state is None or value > best_value:
            best_value, best_state = value, copy.deepcopy(model.state_dict())
    model.load_state_dict(best_state)


def weighted_scatter(x: torch.Tensor, resp: torch.Tensor, full: bool, chunk: int | None = None, spread=None):
    """Soft counts N_k (K,), means m_k (K, D) and covariances S_k (K, D, D) (``full``) or variances
    (K, D) of the rows x (..., D) under responsibilities resp (..., K): the maximum-likelihood
    M-step of a Gaussian mixture, without any floor::

        N_k = sum_i r_ik,   m_k = sum_i r_ik x_i / N_k,   S_k = sum_i r_ik (x_i - m_k)(x_i - m_k)^T / N_k

    EM with missing values (:func:`~dlvm.models.factor.expected_statistics`): x (..., K, D), one
    more dim than resp, gives each component its own rows x_ik = E[x_i | x_o,i, k], and ``spread``
    (K, D, D) = sum_i r_ik Cov[x_i | x_o,i, k] adds spread_k / N_k to S_k. Deviations are taken
    from the new means (no cancellation at any offset of the data), one component and ``chunk``
    rows at a time, so memory stays O(chunk D) beyond x and resp.
    """
    own = x.ndim == resp.ndim + 1
    x = x.reshape(-1, *x.shape[-1 - own:])
    resp = resp.reshape(-1, resp.shape[-1])
    chunk = chunk or ROW_CHUNK
    counts = resp.sum(0)
    safe = counts.clamp(min=1e-300).unsqueeze(-1)
    means = ((resp.unsqueeze(-1) * x).sum(0) if own else resp.T @ x) / safe
    k, d = means.shape
    scatter = x.new_zeros((k, d, d) if full else (k, d))
    for start in range(0, x.shape[0], chunk):
        rows, weights = x[start:start + chunk], resp[start:start + chunk]
        for j in range(k):
            mine, weight = rows[:, j] if own else rows, weights[:, j:j + 1]
            used = weight[:, 0] > 0
            if int(used.sum()) < 0.5 * used.numel():  # hard or sparse responsibilities: skip zeros
                mine, weight = mine[used], weight[used]
            centred = mine - means[j]
            weighted = centred * weight
            scatter[j] += weighted.T @ centred if full else (weighted * centred).sum(0)
    if spread is not None:
        scatter += spread if full else torch.diagonal(spread, dim1=-2, dim2=-1)
    return counts, means, scatter / (safe.unsqueeze(-1) if full else safe)


def weighted_moments(x: torch.Tensor, resp: torch.Tensor, full: bool, floor=VARIANCE_FLOOR):
    """:func:`weighted_scatter` with the variance ``floor`` added to every covariance / variance
    (a valid start for the model's parameters even for a cluster of one point)."""
    counts, means, cov = weighted_scatter(x, resp, full)
    if full:
        eye = torch.eye(x.shape[-1], dtype=x.dtype, device=x.device)
        return counts, means, cov + floor * eye
    return counts, means, cov.clamp(min=0) + floor


def floored_covariance_factor(cov: torch.Tensor, floor: float = VARIANCE_FLOOR) -> torch.Tensor:
    """The factor L (..., D, D) with L L^T + floor I closest to the scatter S = ``cov``: the
    maximum of the Gaussian likelihood -log|Sigma| - tr(Sigma^-1 S) over Sigma >= floor I.

    With S = V diag(s) V^T, the maximiser is Sigma = V diag(max(s, floor)) V^T, so
    L L^T = V diag(max(s - floor, 0)) V^T; eigenvalues at the floor keep a tiny positive excess
    (1e-6 of the floor, relative 1e-12 of the largest) so that L is a proper Cholesky factor.
    """
    values, vectors = torch.linalg.eigh(cov)
    tiny = torch.maximum(torch.as_tensor(floor * 1e-6, dtype=values.dtype), values.amax(-1, keepdim=True) * 1e-12)
    excess = torch.maximum(values - floor, tiny)
    return torch.linalg.cholesky((vectors * excess.unsqueeze(-2)) @ vectors.mT)


def normalized(counts: torch.Tensor, floor: float = PROBABILITY_FLOOR) -> torch.Tensor:
    """Probabilities proportional to ``counts`` along the last dim, each at least ``floor`` (a
    simplex parameter must stay inside the simplex: no exact zeros)."""
    probs = counts / counts.sum(-1, keepdim=True).clamp(min=1e-300)
    probs = probs.clamp(min=floor)
    return probs / probs.sum(-1, keepdim=True)


def check_em(model, mask=None) -> None:
    """One-line refusals of closed-form EM where it does not apply here: Bayesian globals, and
    missing values (a ``mask``) for a model whose EM takes complete data only (the HMM)."""
    if getattr(model, "bayesian", False):
        raise ValueError(
            f"EM fits maximum-likelihood globals; this {type(model).__name__} is Bayesian: "
            "use --optimizer adam"
        )
    if mask is not None:
        raise ValueError(
            f"EM for {type(model).__name__} takes complete data; with missing values use --optimizer lbfgs"
        )


# ---------------------------------------------------------------------- Gaussian components
@dataclass(frozen=True)
class ComponentOptions(ModelOptions):
    """The options of a model built on :class:`GaussianComponents` (the GMM and the HMM add the
    number of components or states)."""

    covariance: str = option("full", "component covariance", choices=("full", "diag"))
    bayesian: bool = option(False, "priors on the global parameters")
    restarts: int = option(5, RESTARTS_HELP, low=1)


class GaussianComponents(LocalParams, PyroModule):
    """K Gaussian densities N(mu_k, Sigma_k) in R^D: the emission part of mixtures and HMMs.

    Args:
        num_features: D.
        num_components: K.
        covariance: ``"full"`` (Sigma_k = L_k L_k^T + floor I, L_k lower triangular) or
            ``"diag"`` (Sigma_k = diag(v_k), v_k >= floor).
        bayesian: means ~ N(m0, s0^2), variances ~ LogNormal (diag) or scales ~ LogNormal and
            correlations ~ LKJ(1) (full); m0, s0 are the data's mean and scale, set by
            :meth:`set_prior`.
    """

    def __init__(self, num_features: int, num_components: int, covariance: str = "full", bayesian: bool = False):
        if covariance not in ("full", "diag"):
            raise ValueError(f"covariance must be 'full' or 'diag', not {covariance!r}")
        super().__init__()
        d, k = num_features, num_components
        self.num_features, self.num_components = d, k
        self.covariance = covariance
        self.full = covariance == "full" and d > 1  # one feature: full and diag coincide
        self.bayesian = bayesian
        self.register_buffer("prior_loc", torch.zeros(d))
        self.register_buffer("prior_scale", torch.ones(d))
        #: added to / the least of every variance; set relative to the data by :meth:`set_floor`
        self.register_buffer("variance_floor", torch.tensor(VARIANCE_FLOOR))
        if bayesian:
            self.means = PyroSample(lambda s: dist.Normal(s.prior_loc, s.prior_scale).expand([k, d]).to_event(2))
            if self.full:
                self.stds = PyroSample(lambda s: dist.LogNormal(s.prior_scale.log(), 1.0).expand([k, d]).to_event(2))
                self.correlation = PyroSample(dist.LKJCholesky(d, 1.0).expand([k]).to_event(1))
            else:
                self.variances = PyroSample(
                    lambda s: dist.LogNormal(2 * s.prior_scale.log(), 2.0).expand([k, d]).to_event(2)
                )
        else:
            self.means = PyroParam(torch.zeros(k, d))
            if self.full:
                self.scale_tril = PyroParam(torch.eye(d).expand(k, d, d).clone(), constraint=constraints.lower_cholesky)
            else:
                self.variances = PyroParam(torch.ones(k, d), constraint=AboveFloor(self))

    def current(self):
        """(means (K, D), spread): spread is the Cholesky factor of Sigma (K, D, D) for ``full``,
        the variances (K, D) for ``diag``. Reads each (possibly sampled) global once."""
        means = self.means
        if self.full:
            tril = self.stds.unsqueeze(-1) * self.correlation if self.bayesian else self.scale_tril
            return means, tril
        variances = self.variances
        return means, variances + self.variance_floor if self.bayesian else variances

    def log_prob(self, x: torch.Tensor, mask: torch.Tensor | None = None, params=None) -> torch.Tensor:
        """log N(x_o; mu_k, Sigma_k,oo) for every component: x (..., D) -> (..., K).

        Missing coordinates are marginalised out (only the observed block of Sigma_k is used).
        Complete data without gradients (evaluation) go through :meth:`complete_log_prob`, in
        chunks of rows (memory O(chunk K D) instead of O(B K D)).
        """
        if mask is None and params is None and not self.bayesian and not torch.is_grad_enabled():
            return self.complete_log_prob(x.reshape(-1, x.shape[-1])).reshape(*x.shape[:-1], self.num_components)
        means, spread = self.current() if params is None else params
        xk = x.unsqueeze(-2)
        mk = None if mask is None else mask.unsqueeze(-2)
        if not self.full:
            terms = dist.Normal(means, spread.sqrt()).log_prob(xk)
            return (terms if mk is None else torch.where(mk, terms, 0.0)).sum(-1)
        eye = torch.eye(self.num_features, dtype=x.dtype, device=x.device)
        if mk is None:
            chol = torch.linalg.cholesky(spread @ spread.mT + self.variance_floor * eye)
            return dist.MultivariateNormal(means, scale_tril=chol).log_prob(xk)
        floor = self.variance_floor.expand(spread.shape[:-1])
        return linear_gaussian_log_prob(xk, means, spread, floor, mk)

    def complete_log_prob(self, x: torch.Tensor, chunk: int | None = None) -> torch.Tensor:
        """log N(x; mu_k, Sigma_k) for complete rows x (M, D) -> (M, K), without gradients.

        Full: with Sigma_k = C_k C_k^T and U_k = C_k^-T, ||(x - mu_k)^T U_k||^2 is the Mahalanobis
        term; x @ [U_1 .. U_K] is one (M, D) x (D, K D) product per ``chunk`` rows. Diagonal:
        the quadratic is expanded into products with 1 / v_k and mu_k / v_k. O(M K D^2) (full).
        """
        with torch.no_grad():
            means, spread = self.current()
            k, d = means.shape
            chunk = chunk or DENSITY_CHUNK
            out = x.new_empty(x.shape[0], k)
            if self.full:
                chol = torch.linalg.cholesky(self.covariances())
                eye = torch.eye(d, dtype=x.dtype, device=x.device)
                upper = torch.linalg.solve_triangular(chol, eye, upper=False).mT  # (K, D, D)
                shift = (means.unsqueeze(-2) @ upper).squeeze(-2)  # (K, D)
                # [x, 1] @ [[U_1 .. U_K], [-mu_1 U_1 .. -mu_K U_K]]: the whitened deviations at once
                stacked = torch.cat([upper.permute(1, 0, 2).reshape(d, k * d), -shift.reshape(1, k * d)])
                constant = -0.5 * d * math.log(2 * math.pi) - torch.diagonal(chol, dim1=-2, dim2=-1).log().sum(-1)
                for start in range(0, x.shape[0], chunk):
                    rows = x[start:start + chunk]
                    y = torch.addmm(stacked[d], rows, stacked[:d])
                    out[start:start + chunk] = constant - 0.5 * y.square_().view(-1, k, d).sum(-1)
                return out
            precision = 1.0 / spread
            constant = -0.5 * (d * math.log(2 * math.pi) + spread.log().sum(-1) + (means.pow(2) * precision).sum(-1))
            linear = (means * precision).T  # (D, K)
            for start in range(0, x.shape[0], chunk):
                rows = x[start:start + chunk]
                out[start:start + chunk] = constant + rows @ linear - 0.5 * rows.pow(2) @ precision.T
            return out

    @torch.no_grad()
    def set_maximum_likelihood(self, means: torch.Tensor, scatter: torch.Tensor) -> None:
        """The M-step: mu_k = ``means``, and Sigma_k the best covariance at or above the floor
        for the scatter S_k (:func:`floored_covariance_factor`; diagonal: v_k = max(S_k, floor))."""
        self.means = means
        if self.full:
            self.scale_tril = floored_covariance_factor(scatter, self.variance_floor)
        else:
            self.variances = torch.maximum(scatter, self.variance_floor * (1 + 1e-6))

    def linear_gaussian(self):
        """The components as linear-Gaussian ones, Sigma_k = Lambda_k Lambda_k^T + diag(psi_k):
        (mu (K, D), Lambda (K, D, R), psi (K, D)); full: Lambda_k = L_k (R = D), psi_k = the floor;
        diagonal: no loadings (R = 0), psi_k = v_k."""
        means, spread = self.current()
        if self.full:
            return means, spread, self.variance_floor.expand(means.shape)
        return means, spread.new_zeros(*means.shape, 0), spread

    @local_method
    def covariances(self) -> torch.Tensor:
        """Sigma_k, shape (K, D, D)."""
        _, spread = self.current()
        if not self.full:
            return torch.diag_embed(spread)
        eye = torch.eye(self.num_features, dtype=spread.dtype, device=spread.device)
        return spread @ spread.mT + self.variance_floor * eye

    @local_method
    def sample(self, index: torch.Tensor) -> torch.Tensor:
        """One draw from component ``index[i]`` for every entry: index (...) -> (..., D)."""
        means, spread = self.current()
        noise = torch.randn(*index.shape, self.num_features, dtype=means.dtype, device=means.device)
        if self.full:
            chol = torch.linalg.cholesky(self.covariances())
            return means[index] + (chol[index] @ noise.unsqueeze(-1)).squeeze(-1)
        return means[index] + spread[index].sqrt() * noise

    def num_parameters(self) -> int:
        d = self.num_features
        per = d * (d + 1) // 2 if self.covariance == "full" else d
        return self.num_components * (d + per)

    @torch.no_grad()
    def set_floor(self, x: torch.Tensor) -> None:
        """Set the variance floor relative to the data x (..., D) (:func:`relative_floor`)."""
        self.variance_floor = relative_floor(x).to(self.variance_floor)

    @torch.no_grad()
    def set_prior(self, x: torch.Tensor) -> None:
        """Centre the Bayesian priors on the data: m0 = column means, s0 = column std (floored)."""
        flat = x.reshape(-1, x.shape[-1])
        self.prior_loc = flat.mean(0)
        self.prior_scale = flat.std(0).nan_to_num(1.0).clamp(min=math.sqrt(VARIANCE_FLOOR))

    @torch.no_grad()
    def set_moments(self, means: torch.Tensor, cov: torch.Tensor) -> dict:
        """Set the maximum-likelihood parameters from means and covariances (full) / variances
        (diag); in Bayesian mode return them as starting values for a guide instead."""
        if self.full:
            tril = torch.linalg.cholesky(cov)
            if self.bayesian:
                stds = torch.diagonal(tril, dim1=-2, dim2=-1)
                return {"means": means, "stds": stds, "correlation": tril / stds.unsqueeze(-1)}
            self.means, self.scale_tril = means, tril
            return {}
        if cov.ndim == 3:
            cov = torch.diagonal(cov, dim1=-2, dim2=-1)
        if self.bayesian:
            return {"means": means, "variances": torch.maximum(cov - self.variance_floor, self.variance_floor)}
        self.means, self.variances = means, torch.maximum(cov, self.variance_floor * 1.01)
        return {}


# ---------------------------------------------------------------------- mixtures
