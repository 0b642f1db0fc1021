"""Generative models p(z) p(x|z), one file per family, and the registry the CLI reads."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from .base import LatentVariableModel, Marginalized, data_plate
from .factor import FactorAnalysis


@dataclass(frozen=True)
class ModelSpec:
    """How to build a registered model from the data's event shape and the user's options.

    ``build(event_shape, options)`` returns the model; ``guides`` names the guides it pairs with
    (the first is the default); ``dtype`` is the default floating type (classical models use
    float64 so that they match their references to many digits). ``example_shape`` and
    ``example_options`` describe a tiny valid problem (rows of that shape, values in [0, 1]) on
    which the shared test battery runs every model x guide pair.
    """

    name: str
    summary: str
    build: Callable[[tuple, dict], LatentVariableModel]
    guides: tuple[str, ...]
    dtype: str = "float32"
    example_shape: tuple = (6,)
    example_options: dict = field(default_factory=lambda: {"latent_dim": 2})


def _table_width(event_shape: tuple, name: str) -> int:
    if len(event_shape) != 1:
        raise ValueError(f"{name} needs a table of rows (N, D), got rows of shape {event_shape}")
    return event_shape[0]


MODELS: dict[str, ModelSpec] = {
    "fa": ModelSpec(
        "fa", "Factor Analysis, diagonal noise (§6.3.1)",
        lambda shape, o: FactorAnalysis(_table_width(shape, "fa"), o.get("latent_dim", 2), "diagonal"),
        ("exact", "amortized"), "float64",
    ),
    "ppca": ModelSpec(
        "ppca", "probabilistic PCA, isotropic noise (§6.3.2)",
        lambda shape, o: FactorAnalysis(_table_width(shape, "ppca"), o.get("latent_dim", 2), "isotropic"),
        ("exact", "amortized"), "float64",
    ),
}


def build_model(name: str, event_shape: tuple, options: dict) -> LatentVariableModel:
    """The registered model ``name`` for rows of shape ``event_shape``."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of: {', '.join(MODELS)}")
    return MODELS[name].build(tuple(event_shape), options)


__all__ = [
    "FactorAnalysis", "LatentVariableModel", "MODELS", "Marginalized", "ModelSpec", "build_model",
    "data_plate",
]
