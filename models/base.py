"""The model contract every dlvm model follows.

A model is a :class:`~pyro.nn.PyroModule` whose ``model(x, mask=None, size=None)`` (also its
``forward``) writes the generative process of eq. 6.1, z_i ~ p(z), x_i | z_i ~ p(x | z_i), with
fixed site names: the plate over rows is ``"data"``, the local latent ``"z"``, the observation
``"x"``. ``size`` is the number of rows of the whole data set when ``x`` is a minibatch: the
``"data"`` plate then scales the likelihood by size / batch, so one minibatch step is an unbiased
estimate of the full-data ELBO.

The parameters of models and guides live inside the modules (Pyro's ``module_local_params``,
switched on by :class:`LocalParams` for the construction and the calls of dlvm's modules only:
importing dlvm changes no global Pyro setting), not in Pyro's global parameter store, so several
models can be fitted side by side in one process. One exception: Pyro keeps the running average of
the ``decaying`` score-function baseline in its parameter store (see guides/baselines.py).

A model class declares itself (:class:`LatentVariableModel`): its ``name``, a one-line
``summary``, the ``guides`` it pairs with (the first is its default), its ``Options`` (a typed
dataclass, :mod:`dlvm.models.options`) and ``from_options`` that builds it from the data's event
shape and those options; the registry (:data:`dlvm.models.MODELS`) and the command line's flags are
read from these declarations. Optional capabilities are declared as class attributes and exist
only where they are exact: ``exact_marginal`` (``log_marginal(x, mask)`` and ``marginal_model``,
the model with its local latents integrated out, trained by :class:`Marginalized`),
``exact_posterior`` (``posterior(x, mask)``) and ``can_sample`` (``sample(n)``); for a registered model (one with a
``name``) a declaration without its method, or a method without its declaration, is an error when
the class is defined.
"""
from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable
from typing import ClassVar

import pyro
import torch
from pyro.distributions import TorchDistribution
from pyro.infer.autoguide.initialization import init_to_median
from pyro.nn import PyroModule, pyro_method
from torch.distributions import constraints
from torch import nn

from .options import ModelOptions, NoOptions

#: the floating types a model is built in, by the name a config or ``--dtype`` gives
DTYPES = {"float32": torch.float32, "float64": torch.float64}


def table_width(event_shape: tuple, name: str) -> int:
    """D of rows of shape (D,); a one-line error for any other row shape."""
    if len(event_shape) != 1:
        raise ValueError(f"{name} needs a table of rows (N, D), got rows of shape {tuple(event_shape)}")
    return event_shape[0]


def sequence_shape(event_shape: tuple, name: str) -> tuple[int, int]:
    """(T, D) of sequences whose rows have shape (T, D); a one-line error otherwise."""
    if len(event_shape) != 2:
        raise ValueError(
            f"{name} needs sequences (N, T, D), got rows of shape {tuple(event_shape)}; "
            "cut a table into windows first (--window T)"
        )
    return tuple(event_shape)


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


def init_to_model_start(model):
    """init_loc_fn: the model's data-dependent start (``model.initial_globals``, set by its
    ``initialize``: site name, or its last dotted parts, -> value), else the prior median."""

    def init(site):
        for key, value in getattr(model, "initial_globals", {}).items():
            if site["name"] == key or site["name"].endswith("." + key):
                return value.to(site["value"].dtype) if "value" in site and site["value"] is not None else value
        return init_to_median(site)

    return init


def placement(module) -> tuple[torch.device, torch.dtype]:
    """(device, dtype) of a module's first floating tensor (parameters, then buffers); the CPU and
    torch's default dtype for a module without one, or a plain function."""
    tensors = itertools.chain(module.parameters(), module.buffers()) if isinstance(module, nn.Module) else ()
    first = next((t for t in tensors if t.is_floating_point()), None)
    return (first.device, first.dtype) if first is not None else (torch.device("cpu"), torch.get_default_dtype())


#: the method each declared capability stands for
CAPABILITIES = {"exact_marginal": "log_marginal", "exact_posterior": "posterior", "can_sample": "sample"}


def declares(model, capability: str) -> bool:
    """Whether ``model`` has ``capability`` (see :data:`CAPABILITIES`): a dlvm model by its
    declaration (a :class:`Marginalized` one answers for its base); a model written as plain Pyro
    code, which declares nothing, by having the capability's method."""
    if hasattr(model, capability):
        return bool(getattr(model, capability))
    return hasattr(model, CAPABILITIES[capability])


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
    """Base class: the declarations, the contract, the data plate and the parameter count."""

    #: the name the registry and the command line know the model by ("" for an unregistered class)
    name: ClassVar[str] = ""
    #: one line for ``dlvm list``
    summary: ClassVar[str] = ""
    #: the guides the model pairs with (:data:`dlvm.guides.GUIDES`); the first is its default
    guides: ClassVar[tuple[str, ...]] = ()
    #: the model's options: a frozen dataclass of :func:`~dlvm.models.options.option` fields
    Options: ClassVar[type[ModelOptions]] = NoOptions
    #: the floating type a registered model is built in (classical models use float64 so that they
    #: match their references to many digits)
    default_dtype: ClassVar[str] = "float32"
    #: the optimizer ``dlvm fit`` uses with the default (exact or enumerated) guide: "em" for the
    #: models with a closed-form EM step (``em_step``); amortized guides train with "adam"
    default_optimizer: ClassVar[str] = "adam"
    #: whether ``em_step`` takes missing values (a mask): ``dlvm fit`` then fits data with
    #: missing values by EM too (else by L-BFGS on the exact marginal)
    em_missing: ClassVar[bool] = False
    #: learning rate per guide when ``--lr`` is not given (else the engine's default)
    default_lr: ClassVar[dict] = {}
    #: training settings ``dlvm fit`` uses where the user gives none: batch_size, max_epochs,
    #: early_stopping (patience), clip_norm, validation (share of rows held out to stop on)
    fit_defaults: ClassVar[dict] = {}
    #: a tiny valid problem, rows of this shape with values in [0, 1], on which the shared test
    #: battery runs every model x guide pair
    example_shape: ClassVar[tuple] = (6,)
    example_options: ClassVar[dict] = {"latent_dim": 2}
    #: True when the model reads a (T, D) table as one time series (1, T, D) in row order
    series_table: ClassVar[bool] = False
    #: declared capabilities (see the module's docstring and :data:`CAPABILITIES`)
    exact_marginal: ClassVar[bool] = False
    exact_posterior: ClassVar[bool] = False
    can_sample: ClassVar[bool] = False

    #: names of the local latent sample sites (for evaluation, diagnostics and guide coverage)
    latent_sites: tuple[str, ...] = ("z",)
    #: number of batch dimensions the model's plates use (for enumeration ELBOs)
    max_plate_nesting: int = 1
    #: what kind of local latent the model has: "continuous", "categorical", "markov" or
    #: "scale-mixture"; the amortized guide family is chosen by it
    latent_kind: str = "continuous"

    def __init_subclass__(cls, **kwargs):
        """A registered model's (one with a ``name``) declarations and methods agree: a capability
        is declared exactly when its method exists, and pairing with the exact guide needs
        ``marginal_model``."""
        super().__init_subclass__(**kwargs)
        if not cls.name:
            return
        for capability, method in CAPABILITIES.items():
            if bool(getattr(cls, capability)) != hasattr(cls, method):
                have = "declares" if getattr(cls, capability) else "does not declare"
                raise TypeError(f"{cls.__name__} {have} {capability} but {'lacks' if have == 'declares' else 'has'} "
                                f"{method}")
        if "exact" in cls.guides and not hasattr(cls, "marginal_model"):
            raise TypeError(f"{cls.__name__} pairs with the exact guide but has no marginal_model")

    @classmethod
    def from_options(cls, event_shape: tuple, options: ModelOptions) -> LatentVariableModel:
        """The model for rows of shape ``event_shape`` with ``options`` (an ``Options`` instance)."""
        raise NotImplementedError(f"{cls.__name__} declares no from_options")

    @classmethod
    def prepare(cls, table):
        """The model's view of a loaded table (N rows, D columns): the table itself, or for a
        :attr:`series_table` model its rows in order as one series, shape (1, N, D)."""
        return table[None] if cls.series_table else table

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
        return placement(self)[0]

    @property
    def dtype(self) -> torch.dtype:
        return placement(self)[1]

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
        if not self.exact_marginal:
            raise ValueError(f"{type(self).__name__} has no exact log-likelihood for information criteria")
        with torch.no_grad():
            return float(self.log_marginal(x, mask).sum()), float(self.observations_per_row(x, mask).sum())

    def observations_per_row(self, x, mask=None) -> torch.Tensor:
        """How many observations each row of ``x`` holds, shape (B,): 1 for a table row.

        Per-observation metrics divide summed log-likelihoods by the sum of this (a sequence
        model counts its observed time steps, so its ``log_likelihood`` is per time step).
        """
        return x.new_ones(x.shape[0])


class ExactModel(LatentVariableModel):
    """Base of the classical models (FA, mixtures, HMM, Student-t FA): exact marginal, posterior and
    sampling, built in float64 (they match their references to many digits) and fitted by
    closed-form EM (``em_step``) by default."""

    default_dtype = "float64"
    default_optimizer = "em"
    exact_marginal = exact_posterior = can_sample = True


class Marginalized(LocalParams, PyroModule):
    """The model with its local latent integrated out exactly: ``log p(x)`` is observed directly.

    Paired with :class:`dlvm.guides.ExactGuide` (a guide with no sites), the ELBO equals the exact
    log-likelihood, the loss is deterministic, and full-batch L-BFGS applies.
    """

    latent_sites: tuple[str, ...] = ()

    def __init__(self, base: LatentVariableModel):
        if not (base.exact_marginal and hasattr(base, "marginal_model")):
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
