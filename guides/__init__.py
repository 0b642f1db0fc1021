"""Variational families q(z|x): amortized encoders and exact guides, and the guide registry.

A guide is chosen by name (:data:`GUIDES`) and built for a model by :func:`pair`; the model
declares which names it pairs with. "amortized" is built by the model's kind of local latent
(:data:`AMORTIZED`): a Normal encoder guide for a continuous z, a categorical encoder guide for a
mixture, a Markov guide for an HMM. Every local guide says which latent sites it samples
(``covers``), and pairing refuses a guide that would leave one of the model's local latents to
its prior.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from math import prod

from ..models.base import Marginalized, declares, placement
from ..models.registry import Registry

from .categorical import BASELINES, AmortizedCategoricalGuide
from .encoders import ENCODERS, ConvEncoder, FlattenEncoder, MLPEncoder, RNNEncoder, TransformerEncoder, make_encoder
from .globals import with_globals
from .markov import AmortizedMarkovGuide
from .normal import AmortizedNormalGuide, ExactGuide
from .scale_mixture import AmortizedScaleMixtureGuide, amortized_scale_mixture

def _exact(model, event_shape, options):
    return Marginalized(model), ExactGuide(), ()


#: kinds of local latent that TraceEnum_ELBO sums out
ENUMERABLE = ("categorical", "markov")


def _enumerated(model, event_shape, options):
    if model.latent_kind not in ENUMERABLE:
        raise ValueError(f"guide 'enum' does not apply to {type(model).__name__}: its local latent is "
                         f"{model.latent_kind}, not {' or '.join(ENUMERABLE)}")
    return model, None, tuple(model.latent_sites)


def _amortized(model, event_shape, options):
    return model, *AMORTIZED.lookup(model.latent_kind)(model, event_shape, options)


def _amortized_categorical(model, event_shape, options):
    mask_input = options.get("mask_input", False)
    width = prod(event_shape) * (2 if mask_input else 1)
    net = make_encoder(options.get("encoder", "mlp"), event_shape, options.get("hidden", (64,)),
                       prod(event_shape) if mask_input else 0)
    guide = AmortizedCategoricalGuide(
        net, model.components, width, options.get("baseline", "neural"), mask_input=mask_input,
        event_shape=event_shape,
    )
    if options.get("warm_start", True):
        model.after_initialize(lambda m, x, mask: guide.warm_start(m, x, mask))
    return guide, guide.covers


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
    if options.get("warm_start", True):
        model.after_initialize(lambda m, x, mask: guide.warm_start(m, x, mask))
    return guide, guide.covers


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
    if options.get("warm_start", True) and declares(model, "exact_posterior"):
        model.after_initialize(lambda m, x, mask: guide.warm_start(m, x, mask))
    return guide, guide.covers


#: model.latent_kind -> builder(model, event_shape, options) -> (local guide, the sites it covers)
#: of the amortized guide for that kind of local latent
AMORTIZED: Registry = Registry("kind of local latent", {
    "continuous": _amortized_normal,
    "categorical": _amortized_categorical,
    "markov": _amortized_markov,
    "scale-mixture": amortized_scale_mixture,
})


@dataclass(frozen=True)
class GuideFamily:
    """A guide as the user names it: ``build(model, event_shape, options) -> (model_to_train,
    local guide or None, local latent sites it covers)``; ``default_elbo``, the estimator it trains
    with unless one is named; ``deterministic``, whether it samples nothing (the loss is then
    exact, and L-BFGS and EM apply)."""

    name: str
    summary: str
    build: Callable
    default_elbo: str = "trace"
    deterministic: bool = False


#: the guides by name; a model declares which of them it pairs with (``guides``)
GUIDES: Registry = Registry.of("guide", (
    GuideFamily("exact", "no latent in the guide: z integrated out exactly (linear-Gaussian models)", _exact,
                deterministic=True),
    GuideFamily("amortized", "encoder network -> q(z|x): Normal (continuous z), categorical (mixtures), "
                "bidirectional GRU -> q(z_t | z_t-1, x) (HMMs)", _amortized),
    GuideFamily("enum", "no discrete latent in the guide: summed out exactly by the traceenum ELBO", _enumerated,
                default_elbo="traceenum", deterministic=True),
))


def default_elbo(guide: str) -> str:
    """The ELBO that ``guide`` is trained with by default."""
    return GUIDES.lookup(guide).default_elbo


def check_pairs(model_class, guide: str) -> None:
    """A one-line error unless ``model_class`` declares that it pairs with ``guide`` (a model
    class that declares no guides, one written outside dlvm, takes any that applies)."""
    GUIDES.lookup(guide)
    if model_class.guides and guide not in model_class.guides:
        name = model_class.name or model_class.__name__
        raise ValueError(f"guide {guide!r} does not pair with {name}; use one of: {', '.join(model_class.guides)}")


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
    comes in the model's dtype and on its device. A guide that would leave one of the model's
    local latent sites (``latent_sites``) to its prior is a one-line error.
    """
    check_pairs(type(model), guide)
    trained, local, covered = GUIDES[guide].build(model, tuple(event_shape), options)
    uncovered = [site for site in trained.latent_sites if site not in covered]
    if uncovered:
        raise ValueError(f"the {guide} guide does not cover {type(model).__name__}'s local latent {uncovered[0]!r} "
                         f"(it covers {', '.join(covered) or 'none'}); pair a guide that covers "
                         f"{', '.join(trained.latent_sites)}")
    built = with_globals(trained, local)
    device, dtype = placement(model)
    return trained, built.to(device=device, dtype=dtype)


__all__ = [
    "AMORTIZED", "AmortizedCategoricalGuide", "AmortizedMarkovGuide", "AmortizedNormalGuide",
    "AmortizedScaleMixtureGuide", "BASELINES",
    "ConvEncoder", "ENCODERS", "ExactGuide", "FlattenEncoder", "GUIDES", "GuideFamily", "MLPEncoder", "RNNEncoder", "TransformerEncoder",
    "check_pairs", "default_elbo", "make_encoder", "pair", "with_globals",
]
