"""Generative models p(z) p(x|z), one file per family, and the registry built from their declarations."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version

from .base import DTYPES, LatentVariableModel, Marginalized, data_plate
from .decoders import LIKELIHOODS, DecoderModel, Emission
from .factor import PPCA, FactorAnalysis
from .hmm import GaussianHMM
from .mixture import GaussianMixture, MixtureOfPPCA
from .options import ModelOptions, option
from .registry import Registry
from .student_t import StudentTFactorAnalysis
from .timevae import TimeVAE
from .vae import VAE
from .vrae import VRAE

try:
    __version__ = version("dlvm")
except PackageNotFoundError:  # a plain checkout, not installed
    __version__ = "unknown"


@dataclass(frozen=True)
class ModelSpec:
    """A registered model class, read from its declarations (:class:`LatentVariableModel`).

    ``build(event_shape, options)`` checks the options (a dict; undeclared names are an error)
    against the class's ``Options`` and builds the model; ``prepare(table)`` is the model's view
    of a loaded table, or None for a plain table of rows.
    """

    cls: type[LatentVariableModel]

    name = property(lambda self: self.cls.name)
    summary = property(lambda self: self.cls.summary)
    guides = property(lambda self: self.cls.guides)
    options = property(lambda self: self.cls.Options)
    dtype = property(lambda self: self.cls.default_dtype)
    default_optimizer = property(lambda self: self.cls.default_optimizer)
    em_missing = property(lambda self: self.cls.em_missing)
    default_lr = property(lambda self: self.cls.default_lr)
    example_shape = property(lambda self: self.cls.example_shape)
    example_options = property(lambda self: self.cls.example_options)
    fit_defaults = property(lambda self: self.cls.fit_defaults)

    @property
    def prepare(self) -> Callable | None:
        return self.cls.prepare if self.cls.series_table else None

    def parse_options(self, options: dict, where: str | None = None) -> ModelOptions:
        """``options`` checked against the declared ``Options`` (errors begin with ``where``,
        default the model's name)."""
        return self.cls.Options.from_dict(options, where or self.name)

    def build(self, event_shape: tuple, options: dict) -> LatentVariableModel:
        return self.cls.from_options(tuple(event_shape), self.parse_options(options))


#: the registered models by their declared name; adding a model is one entry here
MODELS: Registry = Registry.of("model", (ModelSpec(cls) for cls in (
    FactorAnalysis, PPCA, VAE, VRAE, GaussianMixture, MixtureOfPPCA, GaussianHMM, TimeVAE, StudentTFactorAnalysis,
)))


def build_model(name: str, event_shape: tuple, options: dict) -> LatentVariableModel:
    """The registered model ``name`` for rows of shape ``event_shape``."""
    return MODELS.lookup(name).build(tuple(event_shape), options)


__all__ = [
    "DTYPES", "DecoderModel", "Emission", "FactorAnalysis", "GaussianHMM", "GaussianMixture", "LIKELIHOODS",
    "LatentVariableModel", "MODELS", "Marginalized", "MixtureOfPPCA", "ModelOptions", "ModelSpec", "PPCA",
    "Registry", "StudentTFactorAnalysis", "TimeVAE", "VAE", "VRAE", "__version__", "build_model", "data_plate",
    "option",
]
