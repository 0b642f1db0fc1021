"""Student-t factor analysis: a factor model with fat tails, for returns and other heavy-tailed rows.

Generative model, for rows x_i in R^D, a precision scale u_i > 0 and factors z_i in R^K::

    u_i ~ Gamma(nu / 2, rate nu / 2),    z_i | u_i ~ N(0, I_K / u_i),
    x_i | z_i, u_i ~ N(mu + W z_i, Psi / u_i),    Psi = diag(psi_1..psi_D)

Given u_i the row is linear-Gaussian, x_i | u_i ~ N(mu, Sigma / u_i) with Sigma = W W^T + Psi, so
the marginal is the multivariate t with nu degrees of freedom (Kotz and Nadarajah, 2004)::

    log p(x) = log Gamma((nu + D)/2) - log Gamma(nu/2) - D/2 log(nu pi) - 1/2 log|Sigma|
               - (nu + D)/2 log(1 + delta / nu),    delta = (x - mu)^T Sigma^-1 (x - mu)

computed in O(D K^2) per row by the Woodbury identity (models/factor.py). The posterior is exact
too: u_i | x_i ~ Gamma((nu + D)/2, rate (nu + delta_i)/2) and z_i | x_i ~ t_{nu + D}(M^-1 b_i,
(nu + delta_i)/(nu + D) M^-1), M = I + W^T Psi^-1 W, b_i = W^T Psi^-1 (x_i - mu). Missing
coordinates are marginalised out (D becomes the row's observed count). As nu -> infinity the
model is Factor Analysis; nu is fixed (an option), the other globals are maximum likelihood.

Fitted by closed-form EM (:meth:`StudentTFactorAnalysis.em_step`, an ECM algorithm treating u as
the missing data) or by gradient on the exact marginal (the exact guide and L-BFGS).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import pyro
import pyro.distributions as dist
import torch
from pyro.nn import PyroParam
from torch.distributions import constraints

from .base import ExactMarginal, ExactModel, fill_missing, table_width
from .factor import (
    FA_STEPS_PER_ITERATION, NOISE_FLOOR, check_factor_options, factor_analysis_start, factor_analysis_step,
    sample_moments, woodbury_terms,
)
from .options import ModelOptions, option


def student_t_terms(x, loc, loadings, psi, mask=None):
    """(delta (B,), log|Sigma_oo| (B,), observed count (B,), chol of M, b (B, K)) of rows x (B, D)
    against N(mu, Sigma = W W^T + Psi) restricted to each row's observed coordinates."""
    chol, proj, quad, logdet_psi, n_obs = woodbury_terms(x, loc, loadings, psi, mask)
    if chol.dim() == 2:
        solved = torch.cholesky_solve(proj.T, chol).T
    else:
        solved = torch.cholesky_solve(proj.unsqueeze(-1), chol).squeeze(-1)
    delta = quad - (proj * solved).sum(-1)
    logdet = logdet_psi + 2 * torch.diagonal(chol, dim1=-2, dim2=-1).log().sum(-1)
    return delta, logdet, n_obs, chol, solved


def student_t_log_prob(x, loc, loadings, psi, dof: float, mask=None) -> torch.Tensor:
    """log t_nu(x_o; mu_o, Sigma_oo) per row, shape (B,), Sigma = W W^T + Psi (module docstring)."""
    delta, logdet, n_obs, _, _ = student_t_terms(x, loc, loadings, psi, mask)
    half = 0.5 * (dof + n_obs)
    return (torch.lgamma(half) - math.lgamma(0.5 * dof) - 0.5 * n_obs * math.log(dof * math.pi)
            - 0.5 * logdet - half * torch.log1p(delta / dof))


class StudentTFactorAnalysis(ExactModel):
    """Factor analysis with multivariate-t rows: local latents ``u`` (precision scale) and ``z``.

    Args:
        num_features: D.
        latent_dim: K, the number of factors (1 <= K < D).
        dof: nu > 0, the degrees of freedom of the t marginal (smaller: fatter tails).
    """

    name = "tfa"
    summary = "Student-t factor analysis: x = W z + mu + e with a multivariate-t marginal (fat tails)"
    guides = ("exact", "amortized")
    default_lr = {"amortized": 1e-3}
    latent_kind = "scale-mixture"
    latent_sites = ("u", "z")

    @dataclass(frozen=True)
    class Options(ModelOptions):
        latent_dim: int = option(2, "K, the size of the latent z (the factors, 1 <= K < D)", low=1)
        dof: float = option(5.0, "nu, degrees of freedom of the multivariate-t marginal", positive=True)

    @classmethod
    def from_options(cls, event_shape, options):
        return cls(table_width(event_shape, cls.name), options.latent_dim, options.dof)

    def __init__(self, num_features: int, latent_dim: int = 2, dof: float = 5.0):
        check_factor_options(num_features, latent_dim, "diagonal")
        if not (math.isfinite(dof) and dof > 0):
            raise ValueError(f"the degrees of freedom must be a finite number above 0, got {dof}")
        super().__init__()
        self.num_features = num_features
        self.latent_dim = latent_dim
        self.dof = float(dof)
        self.loc = PyroParam(torch.zeros(num_features))
        self.loadings = PyroParam(0.1 * torch.randn(num_features, latent_dim))
        self.noise_variance = PyroParam(torch.ones(num_features), constraint=constraints.greater_than(NOISE_FLOOR))

    def globals(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(mu (D,), W (D, K), psi (D,)), each read once."""
        return self.loc, self.loadings, self.noise_variance

    def model(self, x, mask=None, size=None):
        """The generative process with u and z sampled: sites ``u`` (B,), ``z`` (B, K), ``x`` (B, D)."""
        loc, loadings, psi = self.globals()
        half = x.new_tensor(0.5 * self.dof)
        with self.data_plate(x, size):
            u = pyro.sample("u", dist.Gamma(half, half))
            spread = u.rsqrt().unsqueeze(-1)
            z = pyro.sample("z", dist.Normal(x.new_zeros(self.latent_dim), spread).to_event(1))
            likelihood = dist.Normal(loc + z @ loadings.T, psi.sqrt() * spread)
            if mask is not None:
                likelihood = likelihood.mask(mask)
            return pyro.sample("x", likelihood.to_event(1), obs=x)

    def marginal_model(self, x, mask=None, size=None):
        """The collapsed model: x observed under its multivariate-t marginal (u and z integrated out)."""
        loc, loadings, psi = self.globals()
        with self.data_plate(x, size):
            if mask is not None:
                x = torch.where(mask, x, 0.0)
            density = ExactMarginal(lambda v: student_t_log_prob(v, loc, loadings, psi, self.dof, mask), x,
                                    lambda shape: self._draw(torch.Size(shape) + x.shape[:1]))
            return pyro.sample("x", density, obs=x)

    def log_marginal(self, x, mask=None):
        """Exact log p(x_i) per row, shape (B,): the multivariate t density, O(B D K^2)."""
        return student_t_log_prob(x, self.loc, self.loadings, self.noise_variance, self.dof, mask)

    def posterior(self, x, mask=None) -> dist.MultivariateStudentT:
        """Exact p(z_i | x_i) = t_{nu + D}(M^-1 b_i, (nu + delta_i)/(nu + D) M^-1), a batch of B."""
        delta, _, n_obs, chol, mean = student_t_terms(x, self.loc, self.loadings, self.noise_variance, mask)
        eye = torch.eye(self.latent_dim, dtype=x.dtype, device=x.device)
        covariance_tril = torch.linalg.cholesky(torch.cholesky_inverse(chol) if chol.dim() == 2 else
                                                torch.cholesky_solve(eye.expand_as(chol), chol))
        scale = ((self.dof + delta) / (self.dof + n_obs)).sqrt()
        return dist.MultivariateStudentT(self.dof + n_obs, mean, scale[:, None, None] * covariance_tril)

    def scale_posterior(self, x, mask=None) -> dist.Gamma:
        """Exact p(u_i | x_i) = Gamma((nu + D)/2, rate (nu + delta_i)/2), a batch of B."""
        delta, _, n_obs, _, _ = student_t_terms(x, self.loc, self.loadings, self.noise_variance, mask)
        return dist.Gamma(0.5 * (self.dof + n_obs), 0.5 * (self.dof + delta))

    def covariance(self) -> torch.Tensor:
        """The scale matrix Sigma = W W^T + Psi (D, D); the covariance of x is nu/(nu - 2) Sigma (nu > 2)."""
        return self.loadings @ self.loadings.T + torch.diag(self.noise_variance)

    def _draw(self, shape: torch.Size) -> torch.Tensor:
        """Rows of shape (*shape, D) from the generative model."""
        half = torch.tensor(0.5 * self.dof, dtype=self.dtype, device=self.device)
        spread = dist.Gamma(half, half).sample(shape).rsqrt().unsqueeze(-1)
        z = torch.randn(*shape, self.latent_dim, dtype=self.dtype, device=self.device)
        noise = torch.randn(*shape, self.num_features, dtype=self.dtype, device=self.device)
        return self.loc + spread * (z @ self.loadings.T + noise * self.noise_variance.sqrt())

    @torch.no_grad()
    def sample(self, n: int) -> torch.Tensor:
        """Draw n rows, shape (n, D)."""
        return self._draw(torch.Size([n]))

    def num_parameters(self) -> int:
        """D (means) + D K (loadings) + D (noise variances); nu is fixed."""
        return self.num_features * (self.latent_dim + 2)

    @torch.no_grad()
    def em_step(self, x, mask=None) -> float:
        """One ECM iteration in place (u the missing data); returns the total log-likelihood before it.

        E-step: w_i = E[u_i | x_i] = (nu + D)/(nu + delta_i). CM-steps: mu = sum w_i x_i / sum w_i;
        then with S_w = sum_i w_i (x_i - mu)(x_i - mu)^T / N the expected complete-data
        log-likelihood in (W, Psi) is N/2 (-log|Sigma| - tr(Sigma^-1 S_w)), the Gaussian factor
        analysis likelihood of S_w: ``FA_STEPS_PER_ITERATION`` steps of its fixed point
        (:func:`~dlvm.models.factor.factor_analysis_step`), each of which raises it. Every
        CM-step raises the expectation, so the log-likelihood never falls (Liu and Rubin, 1995).
        """
        if mask is not None:
            raise ValueError("EM for StudentTFactorAnalysis takes complete data; with missing values use "
                             "--optimizer lbfgs")
        loc, loadings, psi = self.globals()
        delta, logdet, n_obs, _, _ = student_t_terms(x, loc, loadings, psi)
        total = float(student_t_log_prob(x, loc, loadings, psi, self.dof).sum())
        weights = (self.dof + n_obs) / (self.dof + delta)
        loc = (weights[:, None] * x).sum(0) / weights.sum()
        centred = x - loc
        scatter = (weights[:, None] * centred).T @ centred / x.shape[0]
        for _ in range(FA_STEPS_PER_ITERATION):
            loadings, psi, _ = factor_analysis_step(scatter, psi, self.latent_dim)
        self.loc, self.loadings, self.noise_variance = loc, loadings, psi
        return total

    @torch.no_grad()
    def initialize(self, x, mask=None) -> None:
        """Start from Factor Analysis of the sample covariance rescaled to the t's scale matrix,
        (nu - 2)/nu S for nu > 2 (S itself otherwise); missing entries filled by column means."""
        loc, cov = sample_moments(fill_missing(x, mask))
        if self.dof > 2:
            cov = cov * (self.dof - 2) / self.dof
        loadings, psi = factor_analysis_start(cov, self.latent_dim)
        self.loc, self.loadings, self.noise_variance = loc, loadings, psi
        self.initialized(x, mask)
