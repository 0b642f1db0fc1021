"""Gradient estimators compared for a registered model or a user's own Pyro model (§6.4.3) and
the gap of each guide family (§6.4.4): behind ``dlvm compare`` and the estimators experiment.

For a registered model every guide it pairs with is built, and guides that sample z without
reparameterisation get the score-function variants (no baseline, decaying average, neural
baseline). :func:`compare` measures the gradient variance of each (guide, estimator) pair on one
minibatch and trains each guide family, recording ELBO, IWAE-K and the exact log p(x) against
steps and seconds; :func:`compare_user_model` does the same for any model and guide.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pyro
import pyro.poutine as poutine
import torch
from pyro.infer.autoguide import AutoDelta, AutoDiagonalNormal, AutoMultivariateNormal, AutoNormal

from ...guides import default_elbo, pair
from ...guides.baselines import WithBaseline, needs_score_function
from ...inference.engine import guide_latents
from ...inference.estimators import compare_estimators, training_curves
from ...models import DTYPES, MODELS, build_model

from ..reporting.plots import curves, grouped_bars

#: Adam's step for the training curves per model (default 1e-2): FA starts at its maximum-likelihood
#: estimate and its amortized guide at the exact posterior, so a small step keeps Adam's
#: noise-sized moves from walking off the optimum it starts at
CURVE_LR = {"fa": 1e-3}
REPARAMETERIZED_ELBOS = ("trace", "meanfield", "renyi:0", "renyi:0.5")
SCORE_ELBOS = ("trace", "tracegraph")


def _samples_without_rsample(guide, x) -> bool:
    with torch.no_grad(), poutine.block():
        trace = poutine.trace(guide).get_trace(x[:2])
    return any(needs_score_function(site) for site in trace.nodes.values())


def build_guides(name: str, event_shape: tuple, options: dict, x: torch.Tensor, seed: int = 0):
    """{label: (model_to_train, guide)} and the (label, estimator) pairs to compare for a model.

    Each registered guide of the model is built with the model's defaults; a guide that samples
    z without reparameterisation gets the three baseline variants under ``tracegraph``; a
    continuous amortized guide also gets its score-function twin (``reparameterized=False``).
    Returns (guides, pairs, families) where families maps each label to its training estimator.
    """
    spec = MODELS[name]
    dtype = DTYPES[spec.dtype]
    guides, pairs, families = {}, [], {}

    def add(guide_name, **guide_options):
        torch.manual_seed(seed)
        model = build_model(name, event_shape, options).to(dtype)
        trained, guide = pair(model, guide_name, event_shape, **guide_options)
        if hasattr(trained, "initialize"):  # after pairing, as fit does: a wrapper adopts a fresh model
            trained.initialize(x.to(dtype), None)
        guide.to(dtype)
        return trained, guide

    # builders ignore the options that do not apply; the score-function Normal twin uses a full
    # covariance because a diagonal Normal without rsample does not survive Pyro's plate broadcast
    score_options = {"reparameterized": False, "baseline": "none", "guide_covariance": "full"}
    for guide_name in spec.guides:
        trained, guide = add(guide_name)
        xd = x.to(dtype)
        if not guide_latents(guide, xd[:2]):  # exact or enumerated: a deterministic gradient
            guides[guide_name] = (trained, guide)
            pairs.append((guide_name, default_elbo(guide_name)))
            families[guide_name] = default_elbo(guide_name)
            continue
        if not _samples_without_rsample(guide, xd):
            guides[guide_name] = (trained, guide)
            pairs += [(guide_name, e) for e in REPARAMETERIZED_ELBOS]
            families[guide_name] = "trace"
        label = f"{guide_name}-score"
        guides[label] = add(guide_name, **score_options)
        if not _samples_without_rsample(guides[label][1], xd):
            del guides[label]  # this guide cannot hide its reparameterisation
            continue
        pairs += [(label, e) for e in SCORE_ELBOS]
        for baseline in ("decaying", "neural"):
            t, g = add(guide_name, **score_options)
            guides[f"{label}+{baseline}"] = (t, WithBaseline(g, event_shape, baseline).to(dtype))
            pairs.append((f"{label}+{baseline}", "tracegraph"))
        families[f"{label}+neural"] = "tracegraph"
    return guides, pairs, families


def compare(model_name: str, data, elbos=None, out: Path | None = None, *, options: dict | None = None,
            num_draws: int = 100, batch_size: int | None = 64, steps: int = 300, eval_every: int = 25,
            num_particles: int = 1, seed: int = 0) -> dict:
    """Estimator comparison for one registered model on ``data`` (N, ...).

    ``elbos`` (e.g. ["trace", "tracegraph"]) keeps only those estimators (None: all that apply).
    Writes ``gradients.csv``, ``curves.csv``, ``gap.csv`` and figures under ``out`` when given;
    returns {"gradients": DataFrame, "curves": DataFrame, "gap": DataFrame}.
    """
    if model_name not in MODELS:
        raise ValueError(f"unknown model {model_name!r}; choose one of: {', '.join(MODELS)}")
    x = torch.as_tensor(np.asarray(data, dtype=np.float64))
    options = dict(MODELS[model_name].example_options if options is None else options)
    guides, pairs, families = build_guides(model_name, tuple(x.shape[1:]), options, x, seed)
    if elbos is not None:
        available = sorted({e for _, e in pairs})
        unused = [name for name in elbos if not any(name in (e, e.split(":")[0]) for e in available)]
        if unused:
            raise ValueError(f"estimator {unused[0]!r} does not apply to {model_name}; "
                             f"choose from: {', '.join(available)}")
        pairs = [(g, e) for g, e in pairs if e in set(elbos) or e.split(":")[0] in set(elbos)]
        families = {g: e for g, e in families.items() if e in set(elbos)}
    gradients = compare_estimators(None, guides, x, pairs=pairs, num_draws=num_draws, batch_size=batch_size,
                                   num_particles=num_particles, seed=seed)
    gradients.insert(0, "model", model_name)
    frames, gaps = {}, []
    for label, elbo in families.items():
        trained, guide = guides[label]
        frame = training_curves(trained, guide, x, elbo, steps=steps, eval_every=eval_every,
                                batch_size=batch_size, seed=seed, num_samples=20,
                                lr=CURVE_LR.get(model_name, 1e-2))
        frame.insert(0, "guide", label)
        frame.insert(0, "model", model_name)
        frames[label] = frame
        last = frame.iloc[-1]
        gaps.append({"model": model_name, "guide": label, "elbo": elbo, "exact": last.log_likelihood,
                     "final_elbo": last.elbo, "iwae": last.iwae, "gap": last.gap})
    result = {"gradients": gradients, "curves": pd.concat(frames.values(), ignore_index=True),
              "gap": pd.DataFrame(gaps)}
    if out is not None:
        write_tables(result, Path(out))
    return result


#: AutoGuides a user model can be compared with by name (``dlvm compare FILE.py:MODEL --guide NAME``)
AUTOGUIDES = {"auto-normal": AutoNormal, "auto-diagonal-normal": AutoDiagonalNormal,
              "auto-multivariate-normal": AutoMultivariateNormal, "auto-delta": AutoDelta}


def load_callable(spec: str):
    """The object NAME defined in the Python file of ``FILE.py:NAME`` (a user's model or guide)."""
    path, _, name = spec.rpartition(":")
    if not path.endswith(".py") or not name:
        raise ValueError(f"expected FILE.py:NAME, got {spec!r}")
    if not Path(path).is_file():
        raise ValueError(f"no such file: {path}")
    module_spec = importlib.util.spec_from_file_location(Path(path).stem, path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    if not callable(getattr(module, name, None)):
        raise ValueError(f"{path} defines no callable {name!r}")
    return getattr(module, name)


def guide_builder(model, guide: str):
    """A function making a fresh guide for ``model``: an AutoGuide by name, or FILE.py:NAME."""
    if guide in AUTOGUIDES:
        return lambda: AUTOGUIDES[guide](model)
    if ":" in guide:
        found = load_callable(guide)
        return lambda: found
    raise ValueError(f"unknown guide {guide!r}; use {', '.join(AUTOGUIDES)} or FILE.py:NAME")


def compare_user_model(model, guide: str, kwargs: dict, elbos, out: Path | None = None, *, label: str = "model",
                       num_draws: int = 100, steps: int = 300, eval_every: int = 25, seed: int = 0) -> dict:
    """Estimator comparison for a user's own model called as ``model(**kwargs)``: gradient
    statistics of each ELBO at the guide's start, and a training curve per ELBO (each from a fresh
    guide and a fresh param store). Same tables and figures as :func:`compare`."""
    make_guide = guide_builder(model, guide)
    guide = guide.rpartition(":")[2]  # FILE.py:NAME is labelled NAME
    elbos = list(elbos or ("trace", "tracegraph"))
    frames, gaps = [], []
    for elbo in elbos:
        pyro.clear_param_store()
        frame = training_curves(model, make_guide(), elbo=elbo, kwargs=kwargs, steps=steps, eval_every=eval_every,
                                seed=seed, num_samples=20)
        frame.insert(0, "guide", f"{guide} / {elbo}")
        frame.insert(0, "model", label)
        frames.append(frame)
        last = frame.iloc[-1]
        gaps.append({"model": label, "guide": f"{guide} / {elbo}", "elbo": elbo, "exact": None,
                     "final_elbo": last.elbo, "iwae": last.iwae, "gap": None})
    pyro.clear_param_store()
    gradients = compare_estimators(model, {guide: make_guide()}, elbos=elbos, kwargs=kwargs, num_draws=num_draws,
                                   seed=seed)
    gradients.insert(0, "model", label)
    result = {"gradients": gradients, "curves": pd.concat(frames, ignore_index=True), "gap": pd.DataFrame(gaps)}
    if out is not None:
        write_tables(result, Path(out), unit="nats (whole data set)")
    return result


def write_tables(result: dict, out: Path, unit: str = "nats per row") -> list[str]:
    """The three tables as CSV (array columns left out) and the three figures; relative paths."""
    out.mkdir(parents=True, exist_ok=True)
    result["gradients"].drop(columns=["mean", "sem"]).to_csv(out / "gradients.csv", index=False)
    result["curves"].to_csv(out / "curves.csv", index=False)
    result["gap"].to_csv(out / "gap.csv", index=False)
    grads = result["gradients"][result["gradients"].group == "all"]
    variance = {m: {f"{g} / {e}": v for g, e, v in zip(f.guide, f.elbo, f.variance)} for m, f in grads.groupby("model")}
    # a log scale where every variance is positive (a deterministic gradient has none)
    grouped_bars(variance, out / "figures" / "gradient_variance.png", "tr Cov(gradient)",
                 "gradient variance", log=bool((grads.variance > 0).all()))
    panels = {m: {g: f for g, f in frame.groupby("guide")} for m, frame in result["curves"].groupby("model")}
    curves(panels, out / "figures" / "curves.png", "step", ("elbo", "log_likelihood"), "training", unit)
    gap = result["gap"].dropna(subset=["gap"])
    gap_values = {m: dict(zip(f.guide, f.gap.clip(lower=1e-6))) for m, f in gap.groupby("model")}
    if gap_values:
        grouped_bars(gap_values, out / "figures" / "gap.png", "log p(x) - ELBO (nats per row)",
                     "final gap", log=True)
    files = ["gradients.csv", "curves.csv", "gap.csv", "figures/gradient_variance.png", "figures/curves.png"]
    return files + (["figures/gap.png"] if gap_values else [])


