"""The model contract every dlvm model follows.

A model is a :class:`~pyro.nn.PyroModule` whose ``model(x, mask=None, size=None)`` (also its
``forward``) writes the generative process of eq. 6.1, z_i ~ p(z), x_i | z_i ~ p(x | z_i), with
fixed site names: the plate over rows is ``"data"``, the local latent ``"z"``, the observation
``"x"``. ``size`` is the number of rows of the whole data set when ``x`` is a minibatch: the
``"data"`` plate then scales the likelihood by size / batch, so one minibatch step is an unbiased
estimate of the full-data ELBO.

Parameters live inside the modules (``pyro.settings.set(module_local_params=True)``), never in
Pyro's global parameter store, so several models can be fitted side by side in one process.

Optional capabilities exist only where they are exact: ``log_marginal(x, mask)``,
``posterior(x, mask)``, ``sample(n)``, ``covariance()``, and ``marginal_model`` (the model with z
integrated out, trained by :class:`Marginalized`).
"""
from __future__ import annotations

import pyro
import torch
from pyro.nn import PyroModule
from torch import nn

pyro.settings.set(module_local_params=True)


def data_plate(x: torch.Tensor, size: int | None = None) -> pyro.plate:
    """The ``"data"`` plate over the rows (dim 0) of ``x``, scaled to ``size`` rows in all.

    Models and guides both open it, so a minibatch of B rows contributes size / B times its
    log-density: an unbiased estimate of the full-data ELBO.
    """
    batch = x.shape[0]
    if size is None or size == batch:
        return pyro.plate("data", batch)
    return pyro.plate("data", size, subsample=torch.arange(batch, device=x.device))


class FeatureScaler(nn.Module):
    """Per-feature min-max scaling on the last axis: u = (x - low) / span, x = low + span u.

    ``low`` and ``span`` (D,) are buffers, set from data by :meth:`fit` (span 1 for a constant
    feature), so a model and its guide can share one scaler and it travels in their state.
    """

    def __init__(self, features: int):
        super().__init__()
        self.register_buffer("low", torch.zeros(features))
        self.register_buffer("span", torch.ones(features))

    @torch.no_grad()
    def fit(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> None:
        """Set low = min and span = max - min of each feature over all rows and steps seen."""
        flat = x.reshape(-1, x.shape[-1])
        seen = torch.ones_like(flat, dtype=torch.bool) if mask is None else mask.reshape(flat.shape)
        low = torch.where(seen, flat, torch.inf).amin(0)
        high = torch.where(seen, flat, -torch.inf).amax(0)
        span = high - low
        self.low.copy_(torch.where(torch.isfinite(low), low, 0.0))
        self.span.copy_(torch.where(torch.isfinite(span) & (span > 0), span, 1.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.low) / self.span

    def inverse(self, u: torch.Tensor) -> torch.Tensor:
        return self.low + self.span * u


class LatentVariableModel(PyroModule):
    """Base class: holds the contract, the data plate and the parameter count."""

    #: names of the local latent sample sites (for evaluation and diagnostics)
    latent_sites: tuple[str, ...] = ("z",)
    #: number of batch dimensions the model's plates use (for enumeration ELBOs)
    max_plate_nesting: int = 1
    #: what kind of local latent the model has: "continuous", "categorical" or "markov";
    #: the guide registry picks the amortized family from it
    latent_kind: str = "continuous"

    def forward(self, x, mask=None, size=None):
        return self.model(x, mask, size)

    def model(self, x, mask=None, size=None):
        raise NotImplementedError

    def data_plate(self, x, size=None):
        return data_plate(x, size)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    def num_parameters(self) -> int:
        """Number of free scalar parameters of the generative model."""
        return sum(p.numel() for p in self.parameters())


class Marginalized(PyroModule):
    """The model with its local latent integrated out exactly: ``log p(x)`` is observed directly.

    Paired with :class:`dlvm.guides.ExactGuide` (a guide with no sites), the ELBO equals the exact
    log-likelihood, the loss is deterministic, and full-batch L-BFGS applies.
    """

    latent_sites: tuple[str, ...] = ()

    def __init__(self, base: LatentVariableModel):
        if not hasattr(base, "marginal_model"):
            raise ValueError(f"{type(base).__name__} has no exact marginal: use an amortized guide")
        super().__init__()
        self.base = base
        self.max_plate_nesting = base.max_plate_nesting

    def __getattr__(self, name):
        # the wrapper is the base model in every respect but its model function
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name == "base":
                raise
            return getattr(self.base, name)

    def forward(self, x, mask=None, size=None):
        return self.base.marginal_model(x, mask, size)

    def model(self, x, mask=None, size=None):
        return self.forward(x, mask, size)
