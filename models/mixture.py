"""Gaussian mixtures (§6.3.3) and mixtures of probabilistic PCA (§6.3.2.2).

Generative model (eq. 6.3), for rows x_i in R^D and a discrete component z_i in {1..K}::

    z_i ~ Categorical(pi),    x_i | z_i = k ~ N(mu_k, Sigma_k)

so p(x) = sum_k pi_k N(x; mu_k, Sigma_k) and p(z = k | x) is eq. 6.4. The Gaussian mixture has
full or diagonal Sigma_k; the mixture of PPCA has Sigma_k = W_k W_k^T + sigma_k^2 I, the factors of
each local PPCA model integrated out in closed form. Globals are maximum likelihood
(``PyroParam``) or, with ``bayesian=True``, latent with priors (Dirichlet weights, Normal means,
log-normal scales, LKJ correlations) for a guide on globals to approximate.

The z site carries ``infer={"enumerate": "parallel"}``: a guide without z trained with
``traceenum`` sums it out exactly; an amortized categorical guide samples it instead. Missing
coordinates (``mask`` False) are marginalised out of every component density.

The K Gaussian densities and their starts are in models/components.py, shared with the
Gaussian HMM.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pyro
import pyro.distributions as dist
import torch
from pyro.nn import PyroParam, PyroSample
from pyro.ops.indexing import Vindex
from torch.distributions import constraints

from .base import ExactModel, fill_missing, local_method, table_width
from .components import (
    RESTARTS_HELP, ROW_CHUNK, VARIANCE_FLOOR, AboveFloor, ComponentOptions, GaussianComponents, best_of_restarts,
    check_components, check_em, each_start, kmeans_start, normalized, relative_floor, weighted_moments,
    weighted_scatter,
)
from .factor import (
    check_factor_options, expected_statistics, factor_analysis_step, linear_gaussian_log_prob, ppca_start,
    principal_components_start,
)
from .options import ModelOptions, option


class _Mixture(ExactModel):
    """Shared machinery of a finite mixture: weights, the model with an enumerable z, the exact
    marginal (eq. 6.3), responsibilities (eq. 6.4), information criteria and the k-means++ start.

    Subclasses give ``component_log_prob(x, mask) -> (B, K)``, ``_sample_components(z)``,
    ``_start_from(x, resp)`` (set parameters from responsibilities), ``_m_step(x, resp, spread)``
    and ``_linear_gaussian()``, the components as (mu (K, D), Lambda (K, D, R), psi (K, D)) with
    Sigma_k = Lambda_k Lambda_k^T + diag(psi_k).
    """

    latent_kind = "categorical"
    max_plate_nesting = 1
    em_missing = True
    guides = ("enum", "exact", "amortized")
    example_options = {"components": 2}

    def __init__(self, num_features: int, components: int, bayesian: bool = False, restarts: int = 5):
        check_components(components)
        super().__init__()
        self.num_features = num_features
        self.components = components
        self.bayesian = bayesian
        self.restarts = restarts
        self.initial_globals: dict = {}
        self.register_buffer("weight_concentration", torch.ones(components))
        if bayesian:
            self.weights = PyroSample(lambda s: dist.Dirichlet(s.weight_concentration))
        else:
            self.weights = PyroParam(torch.full((components,), 1.0 / components), constraint=constraints.simplex)

    # -- generative model
    def _joint_table(self, x, mask):
        """log pi_k + log p(x_i | z_i = k), shape (B, K); every global read once."""
        return self.weights.log() + self.component_log_prob(x, mask)

    def model(self, x, mask=None, size=None):
        """Eq. 6.3 with z explicit: ``z`` (B,) enumerable, ``x`` observed through log p(x_i | z_i)."""
        weights = self.weights
        table = self.component_log_prob(x, mask)
        with self.data_plate(x, size):
            z = pyro.sample("z", dist.Categorical(weights), infer={"enumerate": "parallel"})
            pyro.factor("x", Vindex(table)[..., z])
            return z

    def marginal_model(self, x, mask=None, size=None):
        """The collapsed model: log p(x_i) = logsumexp_k (log pi_k + log N(x_i; mu_k, Sigma_k))."""
        table = self._joint_table(x, mask)
        with self.data_plate(x, size):
            pyro.factor("x", table.logsumexp(-1))

    # -- exact quantities
    @local_method
    def log_marginal(self, x, mask=None) -> torch.Tensor:
        """Exact log p(x_i) per row (eq. 6.3), shape (B,)."""
        return self._joint_table(x, mask).logsumexp(-1)

    @local_method
    def posterior(self, x, mask=None) -> torch.Tensor:
        """Responsibilities p(z_i = k | x_i) (eq. 6.4), shape (B, K)."""
        return self._joint_table(x, mask).softmax(-1)

    @local_method
    def predict(self, x, mask=None) -> torch.Tensor:
        """Most probable component per row, shape (B,)."""
        return self._joint_table(x, mask).argmax(-1)

    @local_method
    @torch.no_grad()
    def sample(self, n: int, return_components: bool = False):
        """n rows from the model (n, D) (and their components (n,) with ``return_components``)."""
        z = torch.multinomial(self.weights, n, replacement=True)
        x = self._sample_components(z)
        return (x, z) if return_components else x

    def num_parameters(self) -> int:
        return self.components - 1 + self._component_parameters()

    # -- closed-form EM
    @torch.no_grad()
    def em_step(self, x, mask=None) -> float:
        """One EM iteration in place; returns the total log-likelihood sum_i log p(x_i) before it.

        E-step: the exact posterior r_ik = p(z_i = k | x_i) (eq. 6.4) from the log-space table
        log pi_k + log p(x_i | k), normalised by its logsumexp. M-step: pi_k = N_k / N and the
        component parameters that maximise sum_i r_ik log p(x_i | k) (:meth:`_m_step`). x (N, D);
        with missing entries (``mask`` (N, D) False) the table holds the densities of the observed
        coordinates, the total is sum_i log p(x_o,i), and the M-step takes the sufficient
        statistics expected given them (:func:`~dlvm.models.factor.expected_statistics`).
        """
        check_em(self)
        log_weights = self.weights.log()
        if mask is not None:
            total, resp, filled, spread = expected_statistics(x, mask, log_weights, *self._linear_gaussian())
            self.weights = normalized(resp.sum(0))
            self._m_step(filled, resp, spread)
            return total
        resp = x.new_empty(x.shape[0], self.components)
        total = 0.0
        for start in range(0, x.shape[0], ROW_CHUNK):
            table = log_weights + self._complete_log_prob(x[start:start + ROW_CHUNK])
            norm = table.logsumexp(-1, keepdim=True)
            total += float(norm.sum())
            resp[start:start + ROW_CHUNK] = (table - norm).exp()
        self.weights = normalized(resp.sum(0))
        self._m_step(x, resp)
        return total

    # -- initialisation
    @torch.no_grad()
    def initialize(self, x, mask=None) -> None:
        """k-means++ on a subsample, Lloyd iterations, moments of the hard clusters; the best of
        ``restarts`` starts by exact log-likelihood is kept (Bayesian: used as guide start).
        Closed-form EM (:func:`~dlvm.inference.em.fit_em`) instead runs from each of :meth:`starts`
        and keeps the best end."""
        if not self.bayesian:
            best_of_restarts(self, x, mask, self.starts(x, mask), self._complete_total if mask is None else None)
            self.initialized(x, mask)
            return
        check_components(self.components, x.shape[0])
        filled = fill_missing(x, mask)
        self._set_floor(filled)
        self._set_prior(filled)
        resp = kmeans_start(filled, self.components)
        self.initial_globals = {"weights": self._weights_from(resp), **self._start_from(filled, resp)}

    @torch.no_grad()
    def starts(self, x, mask=None) -> Iterator[int]:
        """Set the model to each of its ``restarts`` k-means++ starts in turn (missing entries filled
        by their column mean), yielding the restart's index after each."""
        check_components(self.components, x.shape[0])
        filled = fill_missing(x, mask)
        self._set_floor(filled)

        def start(generator):
            resp = kmeans_start(filled, self.components, generator)
            self.weights = self._weights_from(resp)
            self._start_from(filled, resp)

        return each_start(self.restarts, start)

    @torch.no_grad()
    def _complete_total(self, x) -> float:
        """sum_i log p(x_i) for complete rows by the fast component densities (no gradients)."""
        return float((self.weights.log() + self._complete_log_prob(x)).logsumexp(-1).sum())

    @staticmethod
    def _weights_from(resp):
        counts = resp.sum(0) + 1e-3
        return counts / counts.sum()


class GaussianMixture(_Mixture):
    """Gaussian mixture model (§6.3.3): z ~ Cat(pi), x | z = k ~ N(mu_k, Sigma_k).

    Args:
        num_features: D.
        components: K.
        covariance: ``"full"`` or ``"diag"`` Sigma_k.
        bayesian: Dirichlet(1) prior on pi and the priors of :class:`GaussianComponents`.
        restarts: k-means++ starts (:meth:`starts`): EM continues the best of short runs from each,
            :meth:`initialize` keeps the likeliest start.
    """

    name = "gmm"
    summary = "Gaussian mixture, full or diagonal covariances (§6.3.3)"

    @dataclass(frozen=True)
    class Options(ComponentOptions):
        components: int = option(2, "K, the mixture components", low=1)

    @classmethod
    def from_options(cls, event_shape, options):
        return cls(table_width(event_shape, cls.name), options.components, options.covariance, options.bayesian,
                   options.restarts)

    def __init__(self, num_features: int, components: int, covariance: str = "full",
                 bayesian: bool = False, restarts: int = 5):
        super().__init__(num_features, components, bayesian, restarts)
        self.gaussians = GaussianComponents(num_features, components, covariance, bayesian)

    @property
    def covariance_type(self) -> str:
        return self.gaussians.covariance

    def component_log_prob(self, x, mask=None):
        return self.gaussians.log_prob(x, mask)

    @property
    def means(self) -> torch.Tensor:
        return self.gaussians.current()[0]

    @local_method
    def covariances(self) -> torch.Tensor:
        """Sigma_k, shape (K, D, D)."""
        return self.gaussians.covariances()

    def _complete_log_prob(self, x):
        return self.gaussians.complete_log_prob(x)

    def _linear_gaussian(self):
        return self.gaussians.linear_gaussian()

    def _m_step(self, x, resp, spread=None):
        _, means, scatter = weighted_scatter(x, resp, self.gaussians.full, spread=spread)
        self.gaussians.set_maximum_likelihood(means, scatter)

    def _sample_components(self, z):
        return self.gaussians.sample(z)

    def _component_parameters(self):
        return self.gaussians.num_parameters()

    def _set_prior(self, x):
        self.gaussians.set_prior(x)

    def _set_floor(self, x):
        self.gaussians.set_floor(x)

    def _start_from(self, x, resp):
        _, means, cov = weighted_moments(x, resp, self.gaussians.full, self.gaussians.variance_floor)
        start = self.gaussians.set_moments(means, cov)
        return {f"gaussians.{name}": value for name, value in start.items()}


class MixtureOfPPCA(_Mixture):
    """Mixture of probabilistic PCA models (§6.3.2.2; Tipping and Bishop, 1999).

    Component k is a PPCA model x = mu_k + W_k f + e, f ~ N(0, I_L), e ~ N(0, sigma_k^2 I), with its
    factors integrated out: x | z = k ~ N(mu_k, W_k W_k^T + sigma_k^2 I), evaluated in O(D L^2)
    (the linear-Gaussian density of models/factor.py). ``noise="diagonal"`` gives a mixture of
    factor analysers.
    """

    name = "mppca"
    summary = "mixture of probabilistic PCA models (§6.3.2.2)"
    example_options = {"components": 2, "latent_dim": 2}

    @dataclass(frozen=True)
    class Options(ModelOptions):
        components: int = option(2, "K, the mixture components", low=1)
        latent_dim: int = option(2, "L, the factors of each component", low=1)
        noise: str = option("isotropic", "noise of each component (diagonal: mixture of factor analysers)",
                            choices=("isotropic", "diagonal"))
        restarts: int = option(5, RESTARTS_HELP, low=1)

    @classmethod
    def from_options(cls, event_shape, options):
        return cls(table_width(event_shape, cls.name), options.components, options.latent_dim, options.noise,
                   options.restarts)

    def __init__(self, num_features: int, components: int, latent_dim: int = 2,
                 noise: str = "isotropic", restarts: int = 5):
        check_factor_options(num_features, latent_dim, noise)
        super().__init__(num_features, components, False, restarts)
        self.latent_dim = latent_dim
        self.noise = noise
        k, d = components, num_features
        self.loc = PyroParam(torch.zeros(k, d))
        self.loadings = PyroParam(0.1 * torch.randn(k, d, latent_dim))
        shape = (k, d) if noise == "diagonal" else (k, 1)
        self.register_buffer("variance_floor", torch.tensor(VARIANCE_FLOOR))
        self.noise_variance = PyroParam(torch.ones(shape), constraint=AboveFloor(self))

    @property
    def psi(self) -> torch.Tensor:
        """Noise variances, shape (K, D)."""
        return self.noise_variance.expand(self.components, self.num_features)

    def component_log_prob(self, x, mask=None):
        return linear_gaussian_log_prob(
            x.unsqueeze(-2), self.loc, self.loadings, self.psi, None if mask is None else mask.unsqueeze(-2)
        )

    @local_method
    def covariances(self) -> torch.Tensor:
        """W_k W_k^T + Psi_k, shape (K, D, D)."""
        return self.loadings @ self.loadings.mT + torch.diag_embed(self.psi)

    def _complete_log_prob(self, x):
        return self.component_log_prob(x)

    @torch.no_grad()
    def _set_floor(self, x):
        self.variance_floor = relative_floor(x).to(self.variance_floor)

    def _linear_gaussian(self):
        return self.loc, self.loadings, self.psi

    def _m_step(self, x, resp, spread=None):
        """Per component, the PPCA maximum of sum_i r_ik log N(x_i; mu_k, W_k W_k^T + s_k^2 I) given
        its weighted scatter S_k (Tipping and Bishop's closed form; with missing values the
        expected one, :func:`weighted_scatter`'s ``spread``); diagonal noise (a mixture of factor
        analysers): one step of the factor-analysis fixed point from the current Psi_k."""
        _, means, scatter = weighted_scatter(x, resp, True, spread=spread)
        if self.noise == "isotropic":
            loadings, noise = ppca_start(scatter, self.latent_dim)
            noise = noise.unsqueeze(-1)
        else:
            loadings, noise, _ = factor_analysis_step(scatter, self.psi, self.latent_dim)
        self.loc = means
        self.loadings = loadings
        self.noise_variance = torch.maximum(noise, self.variance_floor * (1 + 1e-6))

    def _sample_components(self, z):
        f = torch.randn(z.shape[0], self.latent_dim, dtype=self.dtype, device=self.device)
        noise = torch.randn(z.shape[0], self.num_features, dtype=self.dtype, device=self.device)
        return self.loc[z] + (self.loadings[z] @ f.unsqueeze(-1)).squeeze(-1) + noise * self.psi[z].sqrt()

    def _component_parameters(self):
        d, q = self.num_features, self.latent_dim
        noise = d if self.noise == "diagonal" else 1
        # loadings are identified up to a rotation: D L - L (L - 1) / 2 free values each
        return self.components * (d + d * q - q * (q - 1) // 2 + noise)

    def _start_from(self, x, resp):
        """Per cluster the PPCA estimate of its rows (clusters smaller than L + 1 borrow all rows)."""
        labels = resp.argmax(-1)
        locs, loadings, noises = [], [], []
        for k in range(self.components):
            rows = x[labels == k]
            if rows.shape[0] <= self.latent_dim:
                rows = x
            loc, load, noise = principal_components_start(rows, self.latent_dim, self.noise)
            locs.append(loc)
            loadings.append(load)
            noises.append(noise.reshape(-1))
        self.loc = torch.stack(locs)
        self.loadings = torch.stack(loadings)
        self.noise_variance = torch.maximum(torch.stack(noises), self.variance_floor * 1.01)
        return {}
