"""Factor Analysis (§6.3.1) and probabilistic PCA (§6.3.2): one linear-Gaussian family.

Generative model (eq. 6.2), for rows x_i in R^D and latent factors z_i in R^K::

    z_i ~ N(0, I_K),    x_i | z_i ~ N(mu + Lambda z_i, Psi)

FA has a diagonal Psi = diag(psi_1..psi_D); PPCA the isotropic Psi = sigma^2 I. Everything is exact:
the marginal x_i ~ N(mu, Lambda Lambda^T + Psi) and the posterior
p(z_i | x_i) = N(M^-1 Lambda^T Psi^-1 (x_i - mu), M^-1) with M = I + Lambda^T Psi^-1 Lambda.
Missing entries (``mask`` False) are marginalised out: every formula uses the observed
coordinates of each row only (§6.3.2.2).
"""
from __future__ import annotations

import math

import pyro
import pyro.distributions as dist
import torch
from pyro.nn import PyroParam, PyroSample
from torch.distributions import constraints

from .base import LatentVariableModel, fill_missing

LOG_2PI = math.log(2 * math.pi)
NOISE_FLOOR = 1e-6  # lower bound on every noise variance (avoids Heywood collapse to zero)


def woodbury_terms(x, loc, loadings, psi, mask=None):
    """Shared pieces of the linear-Gaussian marginal N(loc, Lambda Lambda^T + Psi) and posterior.

    Shapes broadcast: ``x`` (..., D), ``loc`` (..., D), ``loadings`` (..., D, K), ``psi`` (..., D)
    (several components at once, e.g. x (B, 1, D) against parameters (C, D)); ``mask`` has x's shape.
    Returns the Cholesky factor of M = I + Lambda^T Psi_o^-1 Lambda (..., K, K), the projection
    b = Lambda^T Psi_o^-1 (x - mu) (..., K), the residual term r^T Psi_o^-1 r (...,), log|Psi_o|
    (...,) and the number of observed coordinates (...,), where _o restricts to the observed
    coordinates of each row.
    """
    latent_dim = loadings.shape[-1]
    resid = x - loc
    prec = 1.0 / psi
    eye = torch.eye(latent_dim, dtype=x.dtype, device=x.device)
    if mask is None:
        weighted = loadings * prec.unsqueeze(-1)  # Psi^-1 Lambda, (..., D, K)
        chol = torch.linalg.cholesky(eye + loadings.mT @ weighted)
        proj = (resid.unsqueeze(-2) @ weighted).squeeze(-2)
        quad = (resid.pow(2) * prec).sum(-1)
        logdet_psi = psi.log().sum(-1)
        n_obs = torch.full_like(quad, float(x.shape[-1]))
    else:
        m = mask.to(x.dtype)
        resid = torch.where(mask, resid, 0.0)
        prec = m * prec  # zero where missing
        gram = torch.einsum("...dk,...d,...dl->...kl", loadings, prec, loadings)
        chol = torch.linalg.cholesky(eye + gram)
        proj = ((resid * prec).unsqueeze(-2) @ loadings).squeeze(-2)
        quad = (resid.pow(2) * prec).sum(-1)
        logdet_psi = (m * psi.log()).sum(-1)
        n_obs = m.sum(-1)
    shape = quad.shape
    return chol, proj, quad, logdet_psi.expand(shape), n_obs.expand(shape)


def linear_gaussian_log_prob(x, loc, loadings, psi, mask=None) -> torch.Tensor:
    """log N(x_o; mu_o, (Lambda Lambda^T + Psi)_oo) over the observed coordinates, in O(D K^2).

    Broadcasts like :func:`woodbury_terms`; returns the broadcast batch shape (e.g. (B,) or (B, C)).
    """
    chol, proj, quad, logdet_psi, n_obs = woodbury_terms(x, loc, loadings, psi, mask)
    solved = torch.cholesky_solve(proj.unsqueeze(-1), chol).squeeze(-1)
    quad = quad - (proj * solved).sum(-1)
    logdet = logdet_psi + 2 * torch.diagonal(chol, dim1=-2, dim2=-1).log().sum(-1)
    return -0.5 * (n_obs * LOG_2PI + logdet + quad)



def principal_components_start(x, latent_dim: int, noise: str = "isotropic"):
    """PPCA maximum-likelihood estimate from the top principal components (Tipping and Bishop).

    For complete rows x (N, D): mu is the column mean, Lambda = U_K (L_K - s^2 I)^1/2 from the top
    K eigenpairs (U_K, L_K) of the sample covariance, s^2 the mean of the remaining eigenvalues;
    ``noise="diagonal"`` gives each coordinate the variance the factors leave unexplained.
    Returns (mu (D,), Lambda (D, K), noise variance: () isotropic or (D,) diagonal).
    """
    num_features = x.shape[-1]
    loc = x.mean(0)
    centred = x - loc
    _, svals, vt = torch.linalg.svd(centred, full_matrices=False)
    eig = svals.pow(2) / x.shape[0]
    rest = eig[latent_dim:]
    sigma2 = (rest.sum() / (num_features - latent_dim)).clamp(min=NOISE_FLOOR * 10)
    top = eig[:latent_dim]
    if top.shape[0] < latent_dim:  # fewer rows than factors
        top = torch.cat([top, top.new_zeros(latent_dim - top.shape[0])])
        vt = torch.cat([vt, vt.new_zeros(latent_dim - vt.shape[0], num_features)])
    loadings = vt[:latent_dim].T * (top - sigma2).clamp(min=0).sqrt()
    if noise == "diagonal":
        sigma2 = (centred.pow(2).mean(0) - loadings.pow(2).sum(-1)).clamp(min=NOISE_FLOOR * 10)
    return loc, loadings, sigma2.to(x.dtype)


class FactorAnalysis(LatentVariableModel):
    """FA / PPCA with maximum-likelihood globals, or Bayesian globals with priors.

    Args:
        num_features: D, the width of a row.
        latent_dim: K, the number of factors (1 <= K < D).
        noise: ``"diagonal"`` (Factor Analysis) or ``"isotropic"`` (PPCA).
        bayesian: give the globals priors (``PyroSample`` sites ``loc``, ``loadings``,
            ``noise_variance``), for standardised data: mu ~ N(0, 1), Lambda_dk ~ N(0, 1),
            psi_d ~ LogNormal(-1, 1). The likelihood and every exact formula are unchanged; a
            guide on globals (or NUTS) then infers them. The loadings are identified only up to
            a rotation (a sign for K = 1): compare rotation-free summaries such as ||Lambda||.
    """

    def __init__(self, num_features: int, latent_dim: int, noise: str = "diagonal", bayesian: bool = False):
        if noise not in ("diagonal", "isotropic"):
            raise ValueError(f"noise must be 'diagonal' or 'isotropic', not {noise!r}")
        if not 1 <= latent_dim < num_features:
            raise ValueError(
                f"latent dimension must be between 1 and {num_features - 1} "
                f"(the number of features less one), got {latent_dim}"
            )
        super().__init__()
        self.num_features = num_features
        self.latent_dim = latent_dim
        self.noise = noise
        self.bayesian = bayesian
        self.initial_globals: dict = {}
        shape = (num_features,) if noise == "diagonal" else ()
        if bayesian:
            self.register_buffer("prior_scale", torch.ones(()))
            self.loc = PyroSample(lambda s: dist.Normal(0.0 * s.prior_scale, s.prior_scale).expand([s.num_features]).to_event(1))
            self.loadings = PyroSample(
                lambda s: dist.Normal(0.0 * s.prior_scale, s.prior_scale).expand([s.num_features, s.latent_dim]).to_event(2)
            )
            self.noise_variance = PyroSample(
                lambda s: dist.LogNormal(-s.prior_scale, s.prior_scale).expand(shape).to_event(len(shape))
            )
            return
        self.loc = PyroParam(torch.zeros(num_features))
        self.loadings = PyroParam(0.1 * torch.randn(num_features, latent_dim))
        self.noise_variance = PyroParam(
            torch.ones(shape), constraint=constraints.greater_than(NOISE_FLOOR)
        )

    # ------------------------------------------------------------------ generative model
    @property
    def psi(self) -> torch.Tensor:
        """Noise variances, shape (D,)."""
        return self.noise_variance.expand(self.num_features)

    def globals(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(mu (D,), Lambda (D, K), psi (D,)), read once, outside the ``"data"`` plate (so that a
        Bayesian model samples them as global sites)."""
        return self.loc, self.loadings, self.psi

    def model(self, x, mask=None, size=None):
        """Eq. 6.2 with z sampled: sites ``z`` (B, K) and ``x`` (B, D) in plate ``data``."""
        loc, loadings, psi = self.globals()
        with self.data_plate(x, size):
            z = pyro.sample(
                "z", dist.Normal(x.new_zeros(self.latent_dim), 1.0).to_event(1)
            )
            likelihood = dist.Normal(loc + z @ loadings.T, psi.sqrt())
            if mask is not None:
                likelihood = likelihood.mask(mask)
            return pyro.sample("x", likelihood.to_event(1), obs=x)

    def marginal_model(self, x, mask=None, size=None):
        """The collapsed model: x ~ N(mu, Lambda Lambda^T + Psi) over the observed coordinates."""
        loc, loadings, psi = self.globals()
        with self.data_plate(x, size):
            if mask is None:
                marginal = dist.LowRankMultivariateNormal(loc, loadings, psi)
                return pyro.sample("x", marginal, obs=x)
            # Missing coordinates get a unit, uncorrelated Gaussian at x = mu (log density
            # -log(2 pi)/2 each), which the factor below removes again: the result is the exact
            # marginal of the observed coordinates of every row.
            m = mask.to(x.dtype)
            marginal = dist.LowRankMultivariateNormal(
                loc, loadings * m.unsqueeze(-1), torch.where(mask, psi, 1.0)
            )
            pyro.sample("x", marginal, obs=torch.where(mask, x, loc))
            pyro.factor("unobserved", 0.5 * LOG_2PI * (1 - m).sum(-1))

    # ------------------------------------------------------------------ exact quantities
    def log_marginal(self, x, mask=None):
        """Exact log p(x_i) per row, shape (B,), by the Woodbury identity in O(B D K^2)."""
        return linear_gaussian_log_prob(x, self.loc, self.loadings, self.psi, mask)

    def posterior(self, x, mask=None) -> dist.MultivariateNormal:
        """Exact p(z_i | x_i) = N(M^-1 b_i, M^-1) as a batch of B multivariate normals."""
        chol, proj, _, _, _ = woodbury_terms(x, self.loc, self.loadings, self.psi, mask)
        mean = torch.cholesky_solve(proj.unsqueeze(-1), chol).squeeze(-1)
        precision_tril = chol.expand(x.shape[0], self.latent_dim, self.latent_dim)
        return dist.MultivariateNormal(mean, precision_matrix=precision_tril @ precision_tril.mT)

    def covariance(self) -> torch.Tensor:
        """Model covariance Lambda Lambda^T + Psi, shape (D, D)."""
        return self.loadings @ self.loadings.T + torch.diag(self.psi)

    @torch.no_grad()
    def sample(self, n: int) -> torch.Tensor:
        """Draw n rows from the generative model, shape (n, D)."""
        z = torch.randn(n, self.latent_dim, dtype=self.dtype, device=self.device)
        noise = torch.randn(n, self.num_features, dtype=self.dtype, device=self.device)
        return self.loc + z @ self.loadings.T + noise * self.psi.sqrt()

    def num_parameters(self) -> int:
        """D (means) + D K (loadings) + D (FA) or 1 (PPCA) noise variances (latent if Bayesian)."""
        noise = self.num_features if self.noise == "diagonal" else 1
        return self.num_features * (self.latent_dim + 1) + noise

    # ------------------------------------------------------------------ initialisation
    @torch.no_grad()
    def initialize(self, x, mask=None) -> None:
        """Start from principal components (:func:`principal_components_start`)."""
        loc, loadings, noise = principal_components_start(fill_missing(x, mask), self.latent_dim, self.noise)
        if self.bayesian:  # the start of the guide on globals (and of NUTS)
            self.initial_globals = {"loc": loc, "loadings": loadings, "noise_variance": noise}
            return
        self.loc = loc
        self.loadings = loadings
        self.noise_variance = noise
