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
from dataclasses import dataclass

import pyro
import pyro.distributions as dist
import torch
from pyro.nn import PyroParam, PyroSample
from torch.distributions import constraints

from .base import ExactMarginal, ExactModel, fill_missing, table_width
from .options import ModelOptions, option

LOG_2PI = math.log(2 * math.pi)
#: fixed-point steps of FA's M-step per EM iteration (see FactorAnalysis.em_step)
FA_STEPS_PER_ITERATION = 20
#: lower bound on every noise variance (a Heywood case stops there instead of at zero); as small
#: as scikit-learn's, so that data in any units (1e-3 or 1e3) are fitted alike
NOISE_FLOOR = 1e-12


#: elements of the per-chunk factor of the conditional covariances in an EM step with missing
#: values (bounds its memory beyond the (N, C, D) expected rows)
CONDITIONAL_BUDGET = 2**22


#: the widest table whose start is computed in closed form (O(D^3) per step on the D x D covariance)
CLOSED_FORM_FEATURES = 2000


def check_factor_options(num_features: int, latent_dim: int, noise: str) -> None:
    """Clear errors for a bad noise model or number of factors (1 <= K < D)."""
    if noise not in ("diagonal", "isotropic"):
        raise ValueError(f"noise must be 'diagonal' or 'isotropic', not {noise!r}")
    if num_features < 2:
        raise ValueError(f"a factor model needs at least 2 features (columns), got {num_features}")
    if not 1 <= latent_dim < num_features:
        raise ValueError(
            f"latent dimension must be between 1 and {num_features - 1} "
            f"(the number of features less one), got {latent_dim}"
        )


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
    if chol.dim() == 2:  # one M for all rows: solve L w = b^T for every row at once
        explained = torch.linalg.solve_triangular(chol, proj.T, upper=False).pow(2).sum(0)
    else:
        explained = (proj * torch.cholesky_solve(proj.unsqueeze(-1), chol).squeeze(-1)).sum(-1)
    return woodbury_log_prob(chol, quad, logdet_psi, n_obs, explained)


def woodbury_log_prob(chol, quad, logdet_psi, n_obs, explained) -> torch.Tensor:
    """The log-density from :func:`woodbury_terms` and b^T M^-1 b (``explained``):
    -1/2 (n_o log 2 pi + log|Psi_o| + log|M| + r^T Psi_o^-1 r - b^T M^-1 b)."""
    logdet = logdet_psi + 2 * torch.diagonal(chol, dim1=-2, dim2=-1).log().sum(-1)
    return -0.5 * (n_obs * LOG_2PI + logdet + quad - explained)


def conditional_moments(x, mask, loc, loadings, psi):
    """log p(x_o), E[x | x_o] and a factor of Cov[x | x_o] under x ~ N(mu, Lambda Lambda^T + Psi).

    With the factors f ~ N(0, I_K) and p(f | x_o) = N(M^-1 b, M^-1) (:func:`woodbury_terms`), the
    missing coordinates have E[x_m | x_o] = mu_m + Lambda_m M^-1 b and Cov[x_m | x_o] =
    Lambda_m M^-1 Lambda_m^T + Psi_m; the observed ones are x_o, without variance. Broadcasts like
    :func:`woodbury_terms` (``mask`` required). Returns log p(x_o) (...), E[x | x_o] (..., D) and
    G = (1 - m) Lambda L^-T (..., D, K), L L^T = M, so that Cov[x | x_o] = G G^T + diag((1 - m) psi),
    in O(D K^2) a row.
    """
    chol, proj, quad, logdet_psi, n_obs = woodbury_terms(x, loc, loadings, psi, mask)
    factors = torch.cholesky_solve(proj.unsqueeze(-1), chol).squeeze(-1)
    log_density = woodbury_log_prob(chol, quad, logdet_psi, n_obs, (proj * factors).sum(-1))
    filled = torch.where(mask, x, loc + (loadings @ factors.unsqueeze(-1)).squeeze(-1))
    gain = torch.linalg.solve_triangular(chol, loadings.mT, upper=False).mT
    return log_density, filled, gain * (~mask).unsqueeze(-1).to(x.dtype)


def expected_statistics(x, mask, log_weights, loc, loadings, psi):
    """The E-step of EM with missing values for a mixture of C linear-Gaussian components,
    x | c ~ N(mu_c, Lambda_c Lambda_c^T + Psi_c) with weights pi_c (C = 1, log pi = 0: FA/PPCA).

    x (N, D) with ``mask`` (N, D), log_weights (C,), loc (C, D), loadings (C, D, K), psi (C, D).
    Returns the log-likelihood sum_i log p(x_o,i) (a float), the responsibilities r_ic =
    p(c | x_o,i) (N, C), E[x_i | x_o,i, c] (N, C, D) and sum_i r_ic Cov[x_i | x_o,i, c] (C, D, D)
    (:func:`conditional_moments`), rows taken in chunks of at most ``CONDITIONAL_BUDGET`` factor
    entries. Computed in float64 whatever x's dtype: with a small noise variance (a full
    covariance's floor, a Heywood case) M = I + Lambda^T Psi^-1 Lambda is too ill-conditioned for
    float32.
    """
    n, count, d, k = x.shape[0], *loadings.shape[-3:]
    log_weights, loc, loadings, psi = (t.double() for t in (log_weights, loc, loadings, psi))
    resp = x.new_empty(n, count)
    filled = x.new_empty(n, count, d)
    spread = loc.new_zeros(count, d, d)
    missing = loc.new_zeros(count, d)
    total = 0.0
    step = max(1, CONDITIONAL_BUDGET // (count * d * max(k, 1)))
    for start in range(0, n, step):
        rows, seen = x[start:start + step].double(), mask[start:start + step]
        log_density, filled[start:start + step], gain = conditional_moments(
            rows.unsqueeze(-2), seen.unsqueeze(-2), loc, loadings, psi)
        table = log_weights + log_density
        norm = table.logsumexp(-1, keepdim=True)
        total += float(norm.sum())
        w = resp[start:start + step] = (table - norm).exp()
        weighted = gain * w[..., None, None]
        spread += (weighted.permute(1, 2, 0, 3).reshape(count, d, -1)
                   @ gain.permute(1, 0, 3, 2).reshape(count, -1, d))
        missing += w.T @ (~seen).to(w.dtype)
    return total, resp, filled, (spread + torch.diag_embed(missing * psi)).to(x.dtype)


def sample_moments(x):
    """Column means (D,) and the maximum-likelihood covariance (D, D) of complete rows x (N, D)."""
    loc = x.mean(0)
    centred = x - loc
    return loc, centred.T @ centred / x.shape[0]


def ppca_start(cov, latent_dim: int):
    """PPCA maximum-likelihood loadings and noise variance given the sample covariance S
    (Tipping and Bishop): Lambda = U_K (L_K - s^2 I)^1/2 from the top K eigenpairs of S, s^2 the
    mean of the D - K others. Batched over leading dims: S (..., D, D) -> (Lambda (..., D, K),
    s^2 (...))."""
    d = cov.shape[-1]
    eig, vecs = torch.linalg.eigh(cov)  # ascending
    sigma2 = eig[..., : d - latent_dim].mean(-1).clamp(min=NOISE_FLOOR * 10)
    scale = (eig[..., d - latent_dim:] - sigma2.unsqueeze(-1)).clamp(min=0).sqrt()
    return (vecs[..., d - latent_dim:] * scale.unsqueeze(-2)).contiguous(), sigma2


def factor_analysis_step(cov, noise, latent_dim: int):
    """One step of the factor-analysis fixed point from noise variances Psi, given S.

    Given Psi the likelihood is maximised by Lambda = Psi^1/2 U_K (L_K - I)_+^1/2 with (U_K, L_K)
    the top K eigenpairs of Psi^-1/2 S Psi^-1/2; then Psi = diag(S - Lambda Lambda^T). O(D^3),
    batched over leading dims: S (..., D, D), Psi (..., D) -> (Lambda (..., D, K), new Psi
    (..., D), the log-likelihood per row at (Lambda, old Psi) up to -D log(2 pi) / 2 (...)).
    """
    d, k = cov.shape[-1], latent_dim
    root = noise.sqrt()
    eig, vecs = torch.linalg.eigh(cov / root.unsqueeze(-1) / root.unsqueeze(-2))
    top = eig[..., d - k:]
    loadings = root.unsqueeze(-1) * vecs[..., d - k:] * (top - 1).clamp(min=0).sqrt().unsqueeze(-2)
    kept = top.clamp(min=1)
    value = -0.5 * (noise.log().sum(-1) + kept.log().sum(-1) + (top / kept).sum(-1) + eig[..., : d - k].sum(-1))
    variance = torch.diagonal(cov, dim1=-2, dim2=-1)
    updated = (variance - loadings.pow(2).sum(-1)).clamp(min=NOISE_FLOOR * 10)
    return loadings.contiguous(), updated, value


def factor_analysis_start(cov, latent_dim: int, max_iter: int = 500, tol: float = 1e-10):
    """FA maximum-likelihood loadings and noise variances given the sample covariance S: the
    fixed point of :func:`factor_analysis_step`, iterated until the log-likelihood per row gains
    less than ``tol`` (at most ``max_iter`` times). Each step costs O(D^3), independent of N.
    Returns (Lambda (D, K), Psi (D,))."""
    noise = cov.diagonal().clamp(min=NOISE_FLOOR * 10)
    previous = -math.inf
    for _ in range(max_iter):
        loadings, noise, value = factor_analysis_step(cov, noise, latent_dim)
        if value - previous < tol * (1 + abs(value)):
            break
        previous = value
    return loadings, noise


def gaussian_log_likelihood(loc, cov, sample_loc, sample_cov) -> torch.Tensor:
    """Mean log N(x_i; loc, cov) over rows whose mean is ``sample_loc`` (D,) and ML covariance
    ``sample_cov`` (D, D): -1/2 (D log 2 pi + log|C| + tr(C^-1 (S + (m - mu)(m - mu)^T))). O(D^3)."""
    chol = torch.linalg.cholesky(cov)
    offset = (sample_loc - loc).unsqueeze(-1)
    second = sample_cov + offset @ offset.T
    trace = torch.cholesky_solve(second, chol).diagonal().sum()
    logdet = 2 * chol.diagonal().log().sum()
    return -0.5 * (cov.shape[-1] * LOG_2PI + logdet + trace)


def principal_components_start(x, latent_dim: int, noise: str = "isotropic"):
    """The PPCA estimate of complete rows x (N, D): (mu (D,), Lambda (D, K), noise variance: ()
    isotropic, or (D,) diagonal = the variance the factors leave unexplained per coordinate)."""
    loc, cov = sample_moments(x)
    loadings, sigma2 = ppca_start(cov, latent_dim)
    if noise == "diagonal":
        sigma2 = (cov.diagonal() - loadings.pow(2).sum(-1)).clamp(min=NOISE_FLOOR * 10)
    return loc, loadings, sigma2.to(x.dtype)


class FactorAnalysis(ExactModel):
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

    name = "fa"
    summary = "Factor Analysis, diagonal noise (§6.3.1)"
    guides = ("exact", "amortized")
    default_lr = {"amortized": 1e-3}
    em_missing = True
    #: Psi of the registered model: "diagonal" (FA); PPCA declares "isotropic"
    noise_kind = "diagonal"

    @dataclass(frozen=True)
    class Options(ModelOptions):
        latent_dim: int = option(2, "K, the size of the latent z (the factors, 1 <= K < D)", low=1)
        bayesian: bool = option(False, "priors on the global parameters")

    @classmethod
    def from_options(cls, event_shape, options):
        return cls(table_width(event_shape, cls.name), options.latent_dim, cls.noise_kind, options.bayesian)

    #: the exact posterior mean is linear in x: a linear encoder can represent it exactly
    default_encoder = "linear"

    def __init__(self, num_features: int, latent_dim: int, noise: str = "diagonal", bayesian: bool = False):
        check_factor_options(num_features, latent_dim, noise)
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
        """The collapsed model: x ~ N(mu, Lambda Lambda^T + Psi) over the observed coordinates.

        The observation's log-density is the Woodbury formula of :meth:`log_marginal`, O(B D K);
        missing entries are set to 0 first so that no NaN reaches the gradient.
        """
        loc, loadings, psi = self.globals()
        with self.data_plate(x, size):
            if mask is not None:
                x = torch.where(mask, x, 0.0)
            marginal = dist.LowRankMultivariateNormal(loc, loadings, psi).expand(x.shape[:1])
            density = ExactMarginal(
                lambda v: linear_gaussian_log_prob(v, loc, loadings, psi, mask), x, marginal.sample
            )
            return pyro.sample("x", density, obs=x)

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

    # ------------------------------------------------------------------ closed-form EM
    def data_moments(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Column means (D,) and ML covariance (D, D) of complete rows x (N, D), O(N D^2); kept for
        the same (unchanged) tensor, so that repeated EM steps cost O(D^3) each."""
        key = (x.data_ptr(), tuple(x.shape), x.dtype, x._version)
        cached = getattr(self, "_moments", None)
        if cached is None or cached[0] != key:
            self._moments = (key, *sample_moments(x))
        return self._moments[1], self._moments[2]

    def expected_moments(self, x, mask) -> tuple[float, torch.Tensor, torch.Tensor]:
        """The E-step with missing values: sum_i log p(x_o,i), and the mean (D,) and covariance
        (D, D) of the complete rows expected under the current model given the observed entries,
        m = mean_i E[x_i | x_o,i] and S = mean_i (E[x_i] - m)(E[x_i] - m)^T + mean_i Cov[x_i | x_o,i]
        (:func:`expected_statistics`)."""
        total, _, filled, spread = expected_statistics(
            x, mask, x.new_zeros(1), self.loc[None], self.loadings[None], self.psi[None])
        mean, cov = sample_moments(filled[:, 0])
        return total, mean, cov + spread[0] / x.shape[0]

    @torch.no_grad()
    def em_step(self, x, mask=None) -> float:
        """One closed-form update in place; returns the total log-likelihood of x (N, D) before it.

        The exact posterior p(z | x) is Gaussian, and the expected complete-data log-likelihood
        depends on the data through its mean m and covariance S only. PPCA: the maximum is
        Tipping and Bishop's closed form (mu = m, Lambda, sigma^2 from the eigenpairs of S), reached
        in one step. FA: ``FA_STEPS_PER_ITERATION`` steps of the fixed point of
        :func:`factor_analysis_step` (Lambda optimal for the current Psi, then Psi = diag(S - Lambda
        Lambda^T)), scikit-learn's iteration: O(D^3) each, so several per pass cost nothing next to
        the data, and a slow (Heywood) approach to the optimum still moves enough per iteration
        for the stopping rule to see it. With missing entries (``mask`` False), m and S are their
        expectations given the observed entries (:meth:`expected_moments`, O(N D (D + K^2))), and
        the total is the observed-data log-likelihood sum_i log p(x_o,i).
        """
        if self.bayesian:
            raise ValueError("EM fits maximum-likelihood globals; this model is Bayesian: use --optimizer adam")
        if mask is None:
            mean, cov = self.data_moments(x)
            total = float(gaussian_log_likelihood(self.loc, self.covariance(), mean, cov)) * x.shape[0]
        else:
            total, mean, cov = self.expected_moments(x, mask)
        if self.noise == "isotropic":
            loadings, noise = ppca_start(cov, self.latent_dim)
        else:
            noise = self.psi
            for _ in range(FA_STEPS_PER_ITERATION):
                loadings, noise, _ = factor_analysis_step(cov, noise, self.latent_dim)
        self.loc = mean.clone()
        self.loadings = loadings
        self.noise_variance = noise.to(x.dtype)
        return total

    # ------------------------------------------------------------------ initialisation
    @torch.no_grad()
    def initialize(self, x, mask=None) -> None:
        """Start at (or next to) the maximum-likelihood estimate, from the sample covariance of
        the rows (missing entries filled by their column mean): closed form for PPCA
        (:func:`ppca_start`), the alternating fixed point of :func:`factor_analysis_start` for FA.
        A Bayesian model keeps it as the start of its guide on globals (and of NUTS). Tables
        wider than :data:`CLOSED_FORM_FEATURES` are refused (the start would take hours)."""
        if self.num_features > CLOSED_FORM_FEATURES:
            raise ValueError(
                f"{self.num_features} features are too many for the closed-form start of FA/PPCA "
                f"(O(D^3) per step; at most {CLOSED_FORM_FEATURES}): reduce the columns first, e.g. with PCA"
            )
        loc, cov = self.data_moments(x) if mask is None else sample_moments(fill_missing(x, mask))
        if self.noise == "isotropic":
            loadings, noise = ppca_start(cov, self.latent_dim)
        else:
            loadings, noise = factor_analysis_start(cov, self.latent_dim)
        noise = noise.to(x.dtype)
        if self.bayesian:
            self.initial_globals = {"loc": loc, "loadings": loadings, "noise_variance": noise}
            return
        self.loc = loc
        self.loadings = loadings
        self.noise_variance = noise
        self.initialized(x, mask)


class PPCA(FactorAnalysis):
    """Probabilistic PCA: :class:`FactorAnalysis` with isotropic noise Psi = sigma^2 I (§6.3.2)."""

    name = "ppca"
    summary = "probabilistic PCA, isotropic noise (§6.3.2)"
    noise_kind = "isotropic"

    def __init__(self, num_features: int, latent_dim: int, noise: str = "isotropic", bayesian: bool = False):
        super().__init__(num_features, latent_dim, noise, bayesian)
