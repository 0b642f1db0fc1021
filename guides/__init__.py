"""Variational families q(z|x): amortized encoders and exact guides, and the guide registry.

A guide is chosen by name and built for a model by :func:`pair`. Builders are registered per
(guide name, ``model.latent_kind``), so "amortized" means a Normal encoder guide for a model
with a continuous z and a categorical encoder guide for a mixture, without special cases.
"""
from __future__ import annotations

from collections.abc import Callable
from math import prod

from torch import nn

from dlvm.models.base import Marginalized

from .categorical import BASELINES, AmortizedCategoricalGuide
from .encoders import ConvEncoder, FlattenEncoder, MLPEncoder, RNNEncoder, TransformerEncoder, step_features
from .globals import with_globals
from .markov import AmortizedMarkovGuide
from .normal import AmortizedNormalGuide, ExactGuide

GUIDES: dict[str, str] = {
    "exact": "no latent in the guide: z integrated out exactly (linear-Gaussian models)",
    "amortized": "encoder network -> q(z|x): Normal (continuous z), categorical (mixtures), "
                 "bidirectional GRU -> q(z_t | z_t-1, x) (HMMs)",
    "enum": "no discrete latent in the guide: summed out exactly by the traceenum ELBO",
}

#: encoder name -> builder(event_shape, hidden, extra_inputs) -> nn.Module with .output_dim
ENCODERS: dict[str, Callable] = {
    "linear": lambda shape, hidden, extra: FlattenEncoder(prod(shape) + extra),
    "mlp": lambda shape, hidden, extra: MLPEncoder(prod(shape) + extra, hidden),
    "gru": lambda shape, hidden, extra: RNNEncoder(step_features(shape, extra), hidden, "gru"),
    "lstm": lambda shape, hidden, extra: RNNEncoder(step_features(shape, extra), hidden, "lstm"),
    "bigru": lambda shape, hidden, extra: RNNEncoder(step_features(shape, extra), hidden, "gru", True),
    "bilstm": lambda shape, hidden, extra: RNNEncoder(step_features(shape, extra), hidden, "lstm", True),
    "conv": lambda shape, hidden, extra: ConvEncoder(step_features(shape, extra), hidden),
    "transformer": lambda shape, hidden, extra: TransformerEncoder(step_features(shape, extra), hidden),
    "conv-stride2": lambda shape, hidden, extra: ConvEncoder(
        step_features(shape, extra), hidden, 3, nn.ReLU, stride=2, window=shape[0]),
}


def make_encoder(name: str, event_shape: tuple, hidden=(64,), extra_inputs: int = 0):
    """Encoder ``name`` for inputs of ``event_shape`` (plus ``extra_inputs`` mask columns)."""
    if name not in ENCODERS:
        raise ValueError(f"unknown encoder {name!r}; choose one of: {', '.join(ENCODERS)}")
    return ENCODERS[name](tuple(event_shape), tuple(hidden), extra_inputs)


def _exact(model, event_shape, options):
    collapsed = Marginalized(model)
    return collapsed, with_globals(collapsed, ExactGuide())


def _enumerated(model, event_shape, options):
    return model, with_globals(model)


def _amortized_categorical(model, event_shape, options):
    mask_input = options.get("mask_input", False)
    width = prod(event_shape) * (2 if mask_input else 1)
    net = make_encoder(options.get("encoder", "mlp"), event_shape, options.get("hidden", (64,)),
                       prod(event_shape) if mask_input else 0)
    guide = AmortizedCategoricalGuide(
        net, model.components, width, options.get("baseline", "neural"), mask_input=mask_input,
        event_shape=event_shape,
    )
    if options.get("warm_start", True) and hasattr(model, "after_initialize"):
        model.after_initialize(lambda m, x, mask: guide.warm_start(m, x, mask))
    return model, with_globals(model, guide)


def _amortized_markov(model, event_shape, options):
    mask_input = options.get("mask_input", False)
    hidden = options.get("hidden", (32,))
    structured = options.get("structured", True) and not getattr(model, "bayesian", False)
    guide = AmortizedMarkovGuide(
        event_shape[-1] * (2 if mask_input else 1), model.states, hidden[0] if hidden else 32,
        options.get("baseline", "neural"), mask_input, options.get("cell", "gru"), structured,
    )
    model.joint_chain = True  # the guide draws the whole chain as one site; the model matches it
    if structured:
        guide.follow(model)
    if options.get("warm_start", True) and hasattr(model, "after_initialize"):
        model.after_initialize(lambda m, x, mask: guide.warm_start(m, x, mask))
    return model, with_globals(model, guide)


def _amortized_normal(model, event_shape, options):
    mask_input = options.get("mask_input", False)
    encoder = options.get("encoder", getattr(model, "default_encoder", "mlp"))
    net = make_encoder(
        encoder, event_shape, options.get("hidden", getattr(model, "hidden", (64,))), prod(event_shape) if mask_input else 0
    )
    guide = AmortizedNormalGuide(
        net, model.latent_dim, options.get("guide_covariance", "diagonal"),
        mask_input=mask_input, reparameterized=options.get("reparameterized", True),
        input_scaler=getattr(model, "input_scaler", None),
    )
    if options.get("warm_start", True) and hasattr(model, "posterior") and hasattr(model, "after_initialize"):
        model.after_initialize(lambda m, x, mask: guide.warm_start(m, x, mask))
    return model, with_globals(model, guide)


#: (guide name, model.latent_kind) -> builder(model, event_shape, options) -> (model, guide)
GUIDE_BUILDERS: dict[tuple[str, str], Callable] = {
    ("exact", "continuous"): _exact,
    ("amortized", "continuous"): _amortized_normal,
    ("exact", "categorical"): _exact,
    ("enum", "categorical"): _enumerated,
    ("amortized", "categorical"): _amortized_categorical,
    ("exact", "markov"): _exact,
    ("enum", "markov"): _enumerated,
    ("amortized", "markov"): _amortized_markov,
}


#: the estimator a guide trains with unless the user names one (enumerated guides need traceenum)
DEFAULT_ELBO: dict[str, str] = {"enum": "traceenum"}


def default_elbo(guide: str) -> str:
    """The ELBO that ``guide`` is trained with by default."""
    return DEFAULT_ELBO.get(guide, "trace")


def pair(model, guide: str, event_shape: tuple, **options):
    """Pair ``model`` with the guide called ``guide``: returns ``(model_to_train, guide)``.

    Options (each used where it applies): ``encoder`` (see :data:`ENCODERS`; default the model's
    ``default_encoder`` attribute, else "mlp"), ``hidden`` (layer sizes; default the model's
    ``hidden`` attribute, else (64,)), ``guide_covariance`` ("diagonal" or "full"), ``mask_input``,
    ``reparameterized``, ``baseline`` ("decaying", "neural" or "none": the score-function baseline
    of discrete amortized guides under ``tracegraph``), ``cell`` ("gru" or "lstm", Markov guides),
    ``structured`` (default True: the Markov guide builds on the model's own chain factors and
    learns backward messages; ignored for Bayesian models),
    ``warm_start`` (default True: an amortized categorical, Markov or Gaussian guide starts from
    the model's exact posterior when the model is initialised; False starts it cold).
    A Bayesian model's global latents get an AutoNormal guide in front (:func:`with_globals`).
    A model with an ``input_scaler`` module (data scaling it learns in ``initialize``) shares it
    with the amortized guide, whose encoder then reads the data on the scale the decoder models.
    The exact guide trains :class:`~dlvm.models.base.Marginalized` (z integrated out). The guide
    comes in the model's dtype and on its device.
    """
    if guide not in GUIDES:
        raise ValueError(f"unknown guide {guide!r}; choose one of: {', '.join(GUIDES)}")
    builder = GUIDE_BUILDERS.get((guide, model.latent_kind))
    if builder is None or (guide == "exact" and not hasattr(model, "marginal_model")):
        usable = sorted(g for g, kind in GUIDE_BUILDERS if kind == model.latent_kind)
        raise ValueError(
            f"guide {guide!r} does not apply to {type(model).__name__}; use one of: {', '.join(usable)}"
        )
    trained, built = builder(model, tuple(event_shape), options)
    reference = next((t for t in (*model.parameters(), *model.buffers()) if t.is_floating_point()), None)
    if reference is not None:
        built.to(device=reference.device, dtype=reference.dtype)
    return trained, built


__all__ = [
    "AmortizedCategoricalGuide", "AmortizedMarkovGuide", "AmortizedNormalGuide", "BASELINES",
    "ConvEncoder", "DEFAULT_ELBO", "ENCODERS", "ExactGuide", "FlattenEncoder", "GUIDES",
    "GUIDE_BUILDERS", "MLPEncoder", "RNNEncoder", "TransformerEncoder", "default_elbo", "make_encoder", "pair", "with_globals",
]
