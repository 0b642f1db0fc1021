"""Generative models p(z) p(x|z), one file per family, and the registry the CLI reads."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from .base import LatentVariableModel, Marginalized, data_plate
from .decoders import LIKELIHOODS, DecoderModel, Emission
from .factor import FactorAnalysis
from .vae import VAE
from .timevae import PRIOR_COMPONENTS, TimeVAE
from .vrae import VRAE
from .hmm import GaussianHMM
from .mixture import GaussianMixture, MixtureOfPPCA


@dataclass(frozen=True)
class ModelSpec:
    """How to build a registered model from the data's event shape and the user's options.

    ``build(event_shape, options)`` returns the model; ``guides`` names the guides it pairs with
    (the first is the default); ``dtype`` is the default floating type (classical models use
    float64 so that they match their references to many digits). ``prepare(table)`` turns the
    loaded table (N rows, D columns) into the model's data, whose rows' shape is then the
    ``event_shape`` (the HMM reads the table as one series: (1, T, D), event shape (T, D)).
    ``example_shape`` and ``example_options`` describe a tiny valid problem (rows of that shape,
    values in [0, 1]) on which the shared test battery runs every model x guide pair.
    """

    name: str
    summary: str
    build: Callable[[tuple, dict], LatentVariableModel]
    guides: tuple[str, ...]
    dtype: str = "float32"
    example_shape: tuple = (6,)
    example_options: dict = field(default_factory=lambda: {"latent_dim": 2})
    #: turns the loaded table (N rows, D columns) into the model's data; None = the table itself
    prepare: Callable | None = None
    #: the optimizer ``dlvm fit`` uses with the default (exact or enumerated) guide when none is
    #: named: "em" for the models with a closed-form EM step (``em_step``), which reaches the
    #: maximum-likelihood optimum in a few passes; amortized guides train with "adam"
    default_optimizer: str = "adam"
    #: learning rate per guide when ``--lr`` is not given (else the engine's default). FA and PPCA
    #: start at their maximum-likelihood estimate and an amortized guide at the exact posterior, so
    #: SVI only refines: a small step keeps Adam's noise-sized steps from walking off the optimum
    default_lr: dict = field(default_factory=dict)
    #: training settings ``dlvm fit`` uses where the user gives none: batch_size, max_epochs,
    #: early_stopping (patience), clip_norm, validation (share of rows held out to stop on)
    fit_defaults: dict = field(default_factory=dict)


def _table_width(event_shape: tuple, name: str) -> int:
    if len(event_shape) != 1:
        raise ValueError(f"{name} needs a table of rows (N, D), got rows of shape {event_shape}")
    return event_shape[0]


def _sequence_shape(event_shape: tuple, name: str) -> tuple[int, int]:
    if len(event_shape) != 2:
        raise ValueError(
            f"{name} needs sequences (N, T, D), got rows of shape {event_shape}; "
            "cut a table into windows first (--window T)"
        )
    return event_shape


def _vae(shape, o):
    return VAE(
        shape, o.get("latent_dim", 2), o.get("hidden", (64,)), o.get("likelihood", "gaussian"),
        o.get("noise_scale", 1.0),
    )


def _vrae(shape, o):
    window, features = _sequence_shape(shape, "vrae")
    return VRAE(
        features, window, o.get("latent_dim", 8), o.get("hidden", (64,)), o.get("cell", "gru"),
        o.get("likelihood", "gaussian"), o.get("noise_scale", 1.0), o.get("feed_latent", True),
    )


def _sequence_width(event_shape: tuple, name: str) -> int:
    if len(event_shape) != 2:
        raise ValueError(f"{name} needs sequences (N, T, D), got rows of shape {event_shape}")
    return event_shape[1]


def _one_series(table):
    """The rows of a (T, D) table, in order, as one time series: shape (1, T, D)."""
    return table[None]


def _timevae(shape, o):
    window, features = _sequence_shape(shape, "timevae")
    return TimeVAE(
        features, window, o.get("latent_dim", 8), o.get("hidden", (50, 100, 200)), o.get("trend_poly", 0),
        o.get("seasonality", ()), None, o.get("residual", True), o.get("likelihood"), o.get("recon_weight"),
        o.get("noise_scale"), o.get("local_level", False), o.get("ar_order", 0),
        prior_components=o.get("prior_components", PRIOR_COMPONENTS),
    )


MODELS: dict[str, ModelSpec] = {
    "fa": ModelSpec(
        "fa", "Factor Analysis, diagonal noise (§6.3.1); options: latent_dim, bayesian",
        lambda shape, o: FactorAnalysis(
            _table_width(shape, "fa"), o.get("latent_dim", 2), "diagonal", o.get("bayesian", False)
        ),
        ("exact", "amortized"), "float64", default_optimizer="em", default_lr={"amortized": 1e-3},
    ),
    "ppca": ModelSpec(
        "ppca", "probabilistic PCA, isotropic noise (§6.3.2); options: latent_dim, bayesian",
        lambda shape, o: FactorAnalysis(
            _table_width(shape, "ppca"), o.get("latent_dim", 2), "isotropic", o.get("bayesian", False)
        ),
        ("exact", "amortized"), "float64", default_optimizer="em", default_lr={"amortized": 1e-3},
    ),
    # options: latent_dim, hidden, likelihood (gaussian | gaussian-fixed | bernoulli), noise_scale
    "vae": ModelSpec("vae", "variational autoencoder, MLP decoder (§6.5)", _vae, ("amortized",),
                     example_options={"latent_dim": 2, "hidden": [8]}),
    # options: latent_dim, hidden, cell (gru | lstm; also the default encoder), likelihood, noise_scale,
    # feed_latent (z also the decoder's input at every step; default True)
    "vrae": ModelSpec("vrae", "variational recurrent autoencoder for (N, T, D) sequences (§6.6.1.1)", _vrae,
                      ("amortized",), example_shape=(5, 2), example_options={"latent_dim": 2, "hidden": [8]}),
    "gmm": ModelSpec(
        "gmm", "Gaussian mixture, full or diagonal covariances (§6.3.3); options: components, "
        "covariance, bayesian, restarts",
        lambda shape, o: GaussianMixture(
            _table_width(shape, "gmm"), o.get("components", 2), o.get("covariance", "full"),
            o.get("bayesian", False), o.get("restarts", 5),
        ),
        ("enum", "exact", "amortized"), "float64", example_options={"components": 2}, default_optimizer="em",
    ),
    "mppca": ModelSpec(
        "mppca", "mixture of probabilistic PCA models (§6.3.2.2); options: components, latent_dim, "
        "noise (isotropic/diagonal), restarts",
        lambda shape, o: MixtureOfPPCA(
            _table_width(shape, "mppca"), o.get("components", 2), o.get("latent_dim", 2),
            o.get("noise", "isotropic"), o.get("restarts", 5),
        ),
        ("enum", "exact", "amortized"), "float64", example_options={"components": 2, "latent_dim": 2},
        default_optimizer="em",
    ),
    "hmm": ModelSpec(
        "hmm", "Gaussian hidden Markov model; the table's rows are one time series in order; "
        "options: states, covariance, bayesian, restarts",
        lambda shape, o: GaussianHMM(
            _sequence_width(shape, "hmm"), o.get("states", 2), o.get("covariance", "full"),
            o.get("bayesian", False), o.get("restarts", 5),
        ),
        ("exact", "enum", "amortized"), "float64", prepare=_one_series,
        example_shape=(6, 2), example_options={"states": 2}, default_optimizer="em",
    ),
    # options: latent_dim, hidden (conv channels), trend_poly (degree P), seasonality (["S:L", ...]),
    # residual (default True), likelihood (gaussian-feature | gaussian-step | gaussian | gaussian-fixed;
    # recon_weight or noise_scale imply gaussian-fixed), recon_weight (default 3), noise_scale,
    # prior_components (of the sampling prior fitted to the codes; 0 = N(0, I))
    "timevae": ModelSpec(
        "timevae", "TimeVAE for (N, T, D) windows, base or interpretable (§6.6.1.2-6.6.1.3)", _timevae,
        ("amortized",), example_shape=(8, 2),
        example_options={"latent_dim": 2, "hidden": [4, 8], "trend_poly": 1, "seasonality": ["2:2"]},
        default_lr={"amortized": 1e-3},
        fit_defaults={"batch_size": 64, "max_epochs": 1000, "early_stopping": 20, "clip_norm": 10.0,
                      "validation": 0.1},
    ),
}


def build_model(name: str, event_shape: tuple, options: dict) -> LatentVariableModel:
    """The registered model ``name`` for rows of shape ``event_shape``."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of: {', '.join(MODELS)}")
    return MODELS[name].build(tuple(event_shape), options)


__all__ = [
    "DecoderModel", "Emission", "FactorAnalysis", "GaussianHMM", "GaussianMixture", "LIKELIHOODS",
    "LatentVariableModel", "MODELS", "Marginalized", "MixtureOfPPCA", "ModelSpec", "TimeVAE", "VAE",
    "VRAE", "build_model", "data_plate",
]
