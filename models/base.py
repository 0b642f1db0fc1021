"""The model contract every dlvm model follows.

A model is a :class:`~pyro.nn.PyroModule` whose ``model(x, mask=None, size=None)`` (also its
``forward``) writes the generative process of eq. 6.1, z_i ~ p(z), x_i | z_i ~ p(x | z_i), with
fixed site names: the plate over rows is ``"data"``, the local latent ``"z"``, the observation
``"x"``. ``size`` is the number of rows of the whole data set when ``x`` is a minibatch: the
``"data"`` plate then scales the likelihood by size / batch, so one minibatch step is an unbiased
estimate of the full-data ELBO.

Parameters live inside the modules (Pyro's ``module_local_params``, switched on by
:class:`LocalParams` for the construction and the calls of dlvm's modules only: importing dlvm
changes no global Pyro setting), never in Pyro's global parameter store, so several models can be
fitted side by side in one process.

Optional capabilities exist only where they are exact: ``log_marginal(x, mask)``,
``posterior(x, mask)``, ``sample(n)``, ``covariance()``, and ``marginal_model`` (the model with z
integrated out, trained by :class:`Marginalized`).
"""
from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable

import pyro
import torch
from pyro.distributions import TorchDistribution
from pyro.nn import PyroModule, pyro_method
from torch.distributions import constraints
from torch import nn



def local_params():
    """A context in which PyroModules keep their parameters in the module, not the global store."""
    return pyro.settings.context(module_local_params=True)


def local_method(fn):
    """:func:`pyro.nn.pyro_method` for dlvm's modules: the method runs in the module's Pyro context
    (its ``PyroSample`` globals are named sample sites) with module-local parameters."""
    method = pyro_method(fn)

    @functools.wraps(fn)
    def wrapped(self, *args, **kwargs):
        with local_params():
            return method(self, *args, **kwargs)
    return wrapped


class LocalParams:
    """Mixin for dlvm's (Pyro) modules: built and called with module-local parameters.

    Pyro reads the setting when a PyroModule is built (its context) and whenever it runs, so
    both are wrapped; Pyro's global setting, and every module a user writes, stay as they are.
    """

    def __init__(self, *args, **kwargs):
        with local_params():
            super().__init__(*args, **kwargs)

    def __call__(self, *args, **kwargs):
        with local_params():
            return super().__call__(*args, **kwargs)


def data_plate(x: torch.Tensor, size: int | None = None) -> pyro.plate:
    """The ``"data"`` plate over the rows (dim 0) of ``x``, scaled to ``size`` rows in all.

    Models and guides both open it, so a minibatch of B rows contributes size / B times its
    log-density: an unbiased estimate of the full-data ELBO.
    """
    batch = x.shape[0]
    if size is None or size == batch:
        return pyro.plate("data", batch)
    return pyro.plate("data", size, subsample=torch.arange(batch, device=x.device))


class ExactMarginal(TorchDistribution):
    """Rows x (B, ...) whose exact log-density per row is ``log_prob_fn(value)`` -> (B,).

    Lets a model observe ``x`` under its closed-form marginal (e.g. a Woodbury formula) inside
    the ``"data"`` plate without building a heavier distribution object. The density of ``x`` is
    computed when the distribution is built, i.e. inside the model, so that Pyro records the
    parameters it reads. ``sampler(sample_shape)`` -> (*sample_shape, B, ...) draws new rows
    (posterior predictive checks need it).
    """

    arg_constraints: dict = {}
    support = constraints.real_vector

    def __init__(self, log_prob_fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
                 sampler: Callable[[torch.Size], torch.Tensor] | None = None):
        self.log_prob_fn = log_prob_fn
        self.sampler = sampler
        self._observed = (x, log_prob_fn(x))
        super().__init__(x.shape[:1], x.shape[1:], validate_args=False)

    def log_prob(self, value):
        observed, log_density = self._observed
        return log_density if value is observed else self.log_prob_fn(value)

    def sample(self, sample_shape=torch.Size()):
        if self.sampler is None:
            raise NotImplementedError("this exact marginal has no sampler")
        with torch.no_grad():
            return self.sampler(torch.Size(sample_shape))


def fill_missing(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """x with missing entries (``mask`` False) replaced by their column's observed mean.

    Columns are the last dim; means run over every other dim. For data-dependent starts only.
    """
    if mask is None:
        return x
    m = mask.to(x.dtype)
    dims = tuple(range(x.ndim - 1))
    loc = (torch.where(mask, x, 0.0).sum(dims) / m.sum(dims).clamp(min=1))
    return torch.where(mask, x, loc)


def has_global_latents(model) -> bool:
    """Whether ``model`` (or one of its submodules) samples global latents (``PyroSample`` priors)."""
    return any(getattr(m, "_pyro_samples", None) for m in model.modules())


def call_in_context(module: PyroModule, method, *args, **kwargs):
    """Run ``method`` (e.g. ``model.log_marginal``) inside ``module``'s Pyro context.

    Called directly, a method that reads ``PyroSample`` globals would draw them from the prior
    without any sample site; inside the context they are named sample sites, so
    ``poutine.condition`` / ``replay`` can set them (Bayesian models).
    """
    with local_params(), module._pyro_context:
        return method(*args, **kwargs)
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


class LatentVariableModel(LocalParams, PyroModule):
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

    def after_initialize(self, hook: Callable) -> None:
        """Call ``hook(model, x, mask)`` at the end of every :meth:`initialize` (an amortized
        guide starts its encoder from the model's data-dependent start this way)."""
        self.__dict__.setdefault("_initialize_hooks", []).append(hook)

    def initialized(self, x, mask=None) -> None:
        """Run the :meth:`after_initialize` hooks; every ``initialize`` ends with this call."""
        for hook in self.__dict__.get("_initialize_hooks", ()):
            hook(self, x, mask)

    def data_plate(self, x, size=None):
        return data_plate(x, size)

    @property
    def device(self) -> torch.device:
        return self._first_tensor().device

    @property
    def dtype(self) -> torch.dtype:
        return self._first_tensor().dtype

    def _first_tensor(self) -> torch.Tensor:
        # a Bayesian model may hold no parameters, only the buffers of its priors
        return next(itertools.chain(self.parameters(), self.buffers()))

    def num_parameters(self) -> int:
        """Number of free scalar parameters of the generative model."""
        return sum(p.numel() for p in self.parameters())

    def bic(self, x, mask=None) -> float:
        """Bayesian information criterion -2 log L + p log n (lower is better), n = observations
        (rows, or time steps of a sequence model); needs an exact ``log_marginal``."""
        total, count = self._total_log_likelihood(x, mask)
        return -2 * total + self.num_parameters() * math.log(count)

    def aic(self, x, mask=None) -> float:
        """Akaike information criterion -2 log L + 2 p (lower is better)."""
        total, _ = self._total_log_likelihood(x, mask)
        return -2 * total + 2 * self.num_parameters()

    def _total_log_likelihood(self, x, mask):
        if not hasattr(self, "log_marginal"):
            raise ValueError(f"{type(self).__name__} has no exact log-likelihood for information criteria")
        with torch.no_grad():
            return float(self.log_marginal(x, mask).sum()), float(self.observations_per_row(x, mask).sum())

    def observations_per_row(self, x, mask=None) -> torch.Tensor:
        """How many observations each row of ``x`` holds, shape (B,): 1 for a table row.

        Per-observation metrics divide summed log-likelihoods by the sum of this (a sequence
        model counts its observed time steps, so its ``log_likelihood`` is per time step).
        """
        return x.new_ones(x.shape[0])


class Marginalized(LocalParams, PyroModule):
    """The model with its local latent integrated out exactly: ``log p(x)`` is observed directly.

    Paired with :class:`dlvm.guides.ExactGuide` (a guide with no sites), the ELBO equals the exact
    log-likelihood, the loss is deterministic, and full-batch L-BFGS applies.
    """

    latent_sites: tuple[str, ...] = ()

    def __init__(self, base: LatentVariableModel):
        if not hasattr(base, "marginal_model"):
            raise ValueError(f"{type(base).__name__} has no exact marginal: use an amortized guide")
        ran = [m for m in base.modules() if m is not base and isinstance(m, PyroModule) and m._pyro_context.used]
        if ran:  # Pyro cannot adopt submodules that already ran on their own
            raise ValueError(
                f"this {type(base).__name__} has already run; pair it with the exact guide before "
                "initialising or fitting it"
            )
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
