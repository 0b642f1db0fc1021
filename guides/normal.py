"""Gaussian variational families for a continuous local latent ``z``.

:class:`AmortizedNormalGuide` is q_phi(z_i | x_i) = N(m_phi(x_i), S_phi(x_i)) with an encoder
network shared by every row (eq. 6.12), diagonal or full (Cholesky) covariance.
:class:`ExactGuide` is the empty guide that goes with :class:`dlvm.models.base.Marginalized`.
"""
from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
from pyro.nn import PyroModule
from torch import nn
from torch.nn.functional import softplus

from ..models.base import LocalParams, data_plate

from .categorical import fit_deterministic, warm_start_rows
from .encoders import encoder_input

MIN_SCALE = 1e-4


def gaussian_kl(q_loc, q_tril, p_loc, p_precision) -> torch.Tensor:
    """KL(N(m_q, L L^T) || N(m_p, P^-1)) per row, (B,):
    1/2 [tr(P L L^T) + (m_q - m_p)^T P (m_q - m_p) - K - log|P| - 2 log|L|], shapes (B, K),
    (B, K, K), (B, K), (B, K, K) (P may broadcast)."""
    diff = (q_loc - p_loc).unsqueeze(-1)
    trace = ((p_precision @ q_tril) * q_tril).sum((-2, -1))
    quad = (diff.mT @ p_precision @ diff).squeeze(-1).squeeze(-1)
    logdet_p = 2 * torch.linalg.cholesky(p_precision).diagonal(dim1=-2, dim2=-1).log().sum(-1)
    logdet_q = 2 * q_tril.diagonal(dim1=-2, dim2=-1).abs().log().sum(-1)
    return 0.5 * (trace + quad - q_loc.shape[-1] + logdet_p.detach() - logdet_q)


class ScoreFunctionNormal(dist.Normal):
    """A Normal whose draws carry no reparameterisation gradient (``has_rsample`` False).

    A class rather than ``has_rsample_(False)`` so that the flag survives ``expand`` and
    ``to_event`` (Independent's flag is read-only).
    """

    has_rsample = False


class AmortizedNormalGuide(LocalParams, PyroModule):
    """q(z_i | x_i) from an encoder, for a latent site of shape (latent_dim,).

    Args:
        encoder: ``nn.Module`` mapping the (B, ...) input to (B, encoder.output_dim) features.
        latent_dim: size of z.
        covariance: ``"diagonal"`` (N(m, diag s^2)) or ``"full"`` (N(m, L L^T), L lower
            triangular with a positive diagonal).
        mask_input: feed the encoder [x with missing entries at 0, mask] instead of x, so the
            guide sees which coordinates are missing.
        reparameterized: False hides the reparameterisation (``has_rsample=False``), which makes
            Pyro's ELBOs fall back to the score-function (REINFORCE) gradient, §6.4.3.1.
        site: name of the latent sample site.
        input_scaler: optional module applied to x before the encoder (a model's data scaling,
            shared with the model so both see the same scale).
    """

    def __init__(
        self,
        encoder: nn.Module,
        latent_dim: int,
        covariance: str = "diagonal",
        mask_input: bool = False,
        reparameterized: bool = True,
        site: str = "z",
        input_scaler: nn.Module | None = None,
    ):
        if covariance not in ("diagonal", "full"):
            raise ValueError(f"covariance must be 'diagonal' or 'full', not {covariance!r}")
        super().__init__()
        self.encoder = encoder
        self.latent_dim = latent_dim
        self.covariance = covariance
        self.mask_input = mask_input
        self.reparameterized = reparameterized
        self.site = site
        self.input_scaler = input_scaler
        width = encoder.output_dim
        self.loc_head = nn.Linear(width, latent_dim)
        self.scale_head = nn.Linear(width, latent_dim)
        nn.init.zeros_(self.scale_head.weight)
        nn.init.constant_(self.scale_head.bias, -1.0)
        if covariance == "full":
            self.register_buffer("_tril", torch.tril_indices(latent_dim, latent_dim, -1), False)
            self.tril_head = nn.Linear(width, self._tril.shape[1])
            nn.init.zeros_(self.tril_head.weight)
            nn.init.zeros_(self.tril_head.bias)

    def features(self, x, mask=None):
        if self.input_scaler is not None:
            x = self.input_scaler(x)
        return self.encoder(encoder_input(x, mask, self.mask_input))

    def distribution(self, x, mask=None) -> dist.TorchDistribution:
        """q(z | x) for a batch: batch shape (B,), event shape (latent_dim,)."""
        h = self.features(x, mask)
        loc = self.loc_head(h)
        scale = softplus(self.scale_head(h)) + MIN_SCALE
        if self.covariance == "diagonal":
            normal = dist.Normal if self.reparameterized else ScoreFunctionNormal
            return normal(loc, scale).to_event(1)
        tril = torch.diag_embed(scale)
        tril[..., self._tril[0], self._tril[1]] = self.tril_head(h)
        q = dist.MultivariateNormal(loc, scale_tril=tril)
        return q if self.reparameterized else q.has_rsample_(False)

    def moments(self, x, mask=None) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean (B, K) and Cholesky factor of the covariance (B, K, K) of q(z | x)."""
        q = self.distribution(x, mask)
        if isinstance(q, dist.MultivariateNormal):
            return q.loc, q.scale_tril
        return q.mean, torch.diag_embed(q.base_dist.scale)

    def warm_start(self, model, x, mask=None) -> None:
        """Start the encoder at the model's exact posterior: minimise the mean KL(q(z | x_i) ||
        p(z | x_i)) over at most ``WARM_START_ROWS`` rows by L-BFGS (exact for a linear encoder and
        a linear-Gaussian model, whose posterior mean is linear in x). Models without an exact
        Gaussian ``posterior`` (or Bayesian ones) are left alone."""
        if getattr(model, "bayesian", False) or not model.exact_posterior:
            return
        xs, ms = warm_start_rows(x, mask)
        with torch.no_grad():
            exact = model.posterior(xs, ms)
        if not isinstance(exact, dist.MultivariateNormal):
            return
        dtype = self.loc_head.weight.dtype  # the guide may not have the model's dtype yet
        xs, loc, precision = xs.to(dtype), exact.mean.to(dtype), exact.precision_matrix.to(dtype)
        params = [p for name, p in self.named_parameters() if not name.startswith("input_scaler")]
        fit_deterministic(params, lambda: gaussian_kl(*self.moments(xs, ms), loc, precision).mean())

    @torch.no_grad()
    def encode(self, x, mask=None) -> torch.Tensor:
        """Posterior means E_q[z | x] (B, latent_dim): the learned representation of each row."""
        return self.distribution(x, mask).mean

    def forward(self, x, mask=None, size=None):
        with data_plate(x, size):
            return pyro.sample(self.site, self.distribution(x, mask))

    @property
    def covers(self) -> tuple[str, ...]:
        """The model's local latent sites this guide samples."""
        return (self.site,)


class ExactGuide(LocalParams, PyroModule):
    """The guide with no sample sites, for a model whose latent is integrated out exactly."""

    covers: tuple[str, ...] = ()

    def forward(self, x, mask=None, size=None):
        return None
