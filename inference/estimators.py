"""Gradient-estimator comparisons: bias, variance and signal-to-noise of ELBO gradients (§6.4.3).

:func:`compare_estimators` draws the gradient of the negative ELBO many times on one fixed
minibatch, for each (guide, estimator) pair, and reports per parameter group the mean gradient,
its variance (trace of the covariance) and the signal-to-noise ratio ||E g|| / sqrt(tr Cov g).
:func:`training_curves` trains one pair and records the ELBO, IWAE-K and, where the model has it,
the exact log-likelihood against steps and seconds: the gap log p(x) - ELBO of §6.4.4, measured.

Estimators are named as in :mod:`dlvm.inference.elbos`; ``renyi:A`` sets the Renyi alpha (``renyi``
alone is alpha = 0). Baselines and reparameterisation belong to the guide
(:class:`dlvm.guides.baselines.WithBaseline`, ``reparameterized=False``), not to the estimator.
"""
from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import pyro
import torch

from ..models.base import placement

from .data import as_observations
from .elbos import elbo_label, make_elbo
from .engine import fit
from .evaluate import evaluate
from .hooks import EvaluateEvery
from .objective import Objective, RowScale

#: parameter groups whose name contains this are auxiliary (baseline networks): not reported
AUXILIARY = "baseline"


class ScopedELBO:
    """An ELBO estimator with a parameter store of its own, seeded with the global store.

    Pyro's decaying-average baseline keeps its running average with ``pyro.param`` in the global
    store: two estimators on sites of the same name would share and overwrite it. This wrapper
    runs every call in a private copy of the store (the same parameter tensors, so a user's
    ``pyro.param`` values are seen and trained), so each estimator keeps its own averages.
    """

    def __init__(self, elbo):
        self.elbo = elbo
        self.state = None

    def __getattr__(self, name):
        if name in ("elbo", "state"):
            raise AttributeError(name)
        return getattr(self.elbo, name)

    def _scoped(self, method, *args, **kwargs):
        if self.state is None:
            shared = pyro.get_param_store().get_state()
            self.state = {"params": dict(shared["params"]), "constraints": dict(shared["constraints"])}
        with pyro.get_param_store().scope(self.state) as state:
            out = getattr(self.elbo, method)(*args, **kwargs)
        self.state = state
        return out

    def loss(self, *args, **kwargs):
        return self._scoped("loss", *args, **kwargs)

    def loss_and_grads(self, *args, **kwargs):
        return self._scoped("loss_and_grads", *args, **kwargs)


def make_estimator(spec, model=None, num_particles: int = 1) -> ScopedELBO:
    """The estimator ``spec`` (a name such as "renyi:0.5", or a pyro.infer.ELBO) for ``model``,
    in a parameter store of its own (:class:`ScopedELBO`)."""
    elbo = make_elbo(spec, num_particles=num_particles,
                     max_plate_nesting=getattr(model, "max_plate_nesting", math.inf))
    if hasattr(elbo, "strict_enumeration_warning"):
        # comparisons run traceenum on continuous models too, where it equals trace on purpose
        elbo.strict_enumeration_warning = False
    return ScopedELBO(elbo)


def _trainable(module) -> list:
    return [p for n, p in module.named_parameters() if p.requires_grad and AUXILIARY not in n]


#: attribute names under which a wrapper holds the module it wraps (a guide with a baseline,
#: a marginalised model); parameter groups are named inside the wrapped module
WRAPPED = ("guide", "base")


def _group_root(module) -> torch.nn.Module:
    """Look through wrappers: descend into a child in :data:`WRAPPED` that holds every parameter."""
    while True:
        own = {id(p) for p in _trainable(module)}
        inner = [c for n, c in module.named_children()
                 if n in WRAPPED and own and own <= {id(p) for p in _trainable(c)}]
        if not inner:
            return module
        module = inner[0]


def parameter_groups(model, guide, objective=None) -> dict[str, list[torch.Tensor]]:
    """Trainable parameters grouped by owner and top-level attribute ("model.loadings",
    "guide.encoder", ...; wrappers such as a baseline are looked through), without baseline
    networks; a parameter shared by model and guide counts once. Parameters an ``objective`` has
    found outside the modules (``pyro.param``, AutoGuides in the global store) are a group each,
    under their own name, or one group per AutoGuide ("AutoNormal.locs", ...)."""
    groups: dict[str, list] = {}
    seen = set()
    for owner, module in (("model", model), ("guide", guide)):
        if not isinstance(module, torch.nn.Module):
            continue
        root = _group_root(module)
        for name, p in root.named_parameters():
            if not p.requires_grad or id(p) in seen or AUXILIARY in name:
                continue
            seen.add(id(p))
            top = name.split(".")[0].removesuffix("_unconstrained")
            groups.setdefault(f"{owner}.{top}", []).append(p)
    for name, p in ({} if objective is None else objective.named_tensors()).items():
        if id(p) not in seen and p.requires_grad and AUXILIARY not in name:
            seen.add(id(p))
            group = ".".join(name.split(".")[:2]) if name.startswith("Auto") else name
            groups.setdefault(group, []).append(p)
    return groups


def _auxiliary_parameters(model, guide) -> list[torch.nn.Parameter]:
    return [p for m in (model, guide) if isinstance(m, torch.nn.Module)
            for n, p in m.named_parameters() if AUXILIARY in n and p.requires_grad]


def model_observations(model, data, mask):
    """(x, mask) as tensors in the model's dtype and on its device."""
    device, dtype = placement(model)
    return as_observations(data, mask, dtype=dtype, device=device)


def _as_pair(model, entry):
    """A guides-dict entry is a guide (paired with ``model``) or a (model_to_train, guide) pair."""
    return entry if isinstance(entry, tuple) else (model, entry)


def gradient_draws(model, guide, estimator, *args, num_draws=100, warmup=0, lr=1e-2, scale=None,
                   **kwargs) -> tuple[dict[str, np.ndarray], float]:
    """``num_draws`` gradients of the negative ELBO of ``model(*args, **kwargs)``.

    ``scale`` (a :class:`~dlvm.inference.objective.RowScale`) scales the rows of a minibatch to
    the data set. Returns ({group: (num_draws, P) array}, mean seconds per ``loss_and_grads``).
    Before the draws, ``warmup`` steps adapt the baselines only (decaying averages, and baseline
    networks by Adam with step ``lr``); the model and guide parameters never change.
    """
    objective = Objective(model, guide, estimator)
    objective.discover(args, kwargs, scale)
    groups = parameter_groups(model, guide, objective)
    params = [p for ps in groups.values() for p in ps]
    auxiliary = _auxiliary_parameters(model, guide)
    optim = torch.optim.Adam(auxiliary, lr=lr) if auxiliary else None
    for _ in range(warmup):
        for p in params + auxiliary:
            p.grad = None
        objective.loss_and_grads(args, kwargs, scale)
        if optim is not None:
            optim.step()
    draws = {g: [] for g in groups}
    seconds = 0.0
    for _ in range(num_draws):
        for p in params + auxiliary:
            p.grad = None
        began = time.perf_counter()
        objective.loss_and_grads(args, kwargs, scale)
        seconds += time.perf_counter() - began
        for g, ps in groups.items():
            draws[g].append(torch.cat([
                (p.grad if p.grad is not None else torch.zeros_like(p)).detach().reshape(-1) for p in ps
            ]).cpu().double())
    for p in params + auxiliary:
        p.grad = None
    return {g: torch.stack(v).numpy() for g, v in draws.items()}, seconds / max(num_draws, 1)


def gradient_statistics(draws: np.ndarray) -> dict:
    """Mean, Monte-Carlo standard error, variance (trace of the covariance) and SNR of (S, P) draws."""
    mean = draws.mean(0)
    variance = float(draws.var(0, ddof=1).sum()) if draws.shape[0] > 1 else math.nan
    norm = float(np.linalg.norm(mean))
    return {
        "mean": mean,
        "sem": draws.std(0, ddof=1) / math.sqrt(draws.shape[0]) if draws.shape[0] > 1 else mean * np.nan,
        "mean_norm": norm,
        "variance": variance,
        "snr": norm / math.sqrt(variance) if variance > 0 else math.inf,
        "size": draws.shape[1],
    }


def _labelled(elbos) -> dict:
    """{label: estimator spec} from a mapping, or from names and ELBO instances."""
    if isinstance(elbos, Mapping):
        return dict(elbos)
    labelled = {}
    for spec in elbos:
        label = elbo_label(spec)
        if label in labelled:
            raise ValueError(f"two estimators are labelled {label!r}: pass a dict label -> estimator")
        labelled[label] = spec
    return labelled


def _minibatch(model, data, mask, batch_size):
    """(rows of the first minibatch, RowScale to N rows or None)."""
    x, mask = model_observations(model, data, mask)
    n = x.shape[0]
    batch = n if batch_size is None else min(int(batch_size), n)
    rows = (x[:batch],) if mask is None else (x[:batch], mask[:batch])
    return rows, RowScale("data", n / batch) if batch < n else None


def compare_estimators(
    model,
    guides: Mapping,
    data=None,
    elbos: Sequence | Mapping = ("trace", "tracegraph"),
    num_draws: int = 100,
    *,
    args: tuple = (),
    kwargs: dict | None = None,
    mask=None,
    pairs: Sequence[tuple[str, str]] | None = None,
    batch_size: int | None = None,
    num_particles: int = 1,
    warmup: int = 20,
    seed: int = 0,
) -> pd.DataFrame:
    """Gradient statistics of each (guide, estimator) pair, any Pyro model and guide.

    Args:
        model: the model (None when every entry of ``guides`` is a (model, guide) pair).
        guides: label -> guide (paired with ``model``) or label -> (model, guide), e.g. from
            :func:`dlvm.guides.pair`.
        data: rows (N, ...) of a dlvm model: the first ``batch_size`` rows (all by default) are the
            minibatch, scaled to N rows by the ``"data"`` plate as in training. Without ``data``
            the model and guide are called as ``model(*args, **kwargs)``.
        elbos: estimator names ("trace", "renyi:0.5", ...) or ``pyro.infer.ELBO`` instances, or a
            dict label -> either; crossed with every guide unless ``pairs`` lists the (guide
            label, estimator label) pairs to run.
        num_draws: gradient draws per pair; ``warmup`` baseline-only steps precede them.

    Returns a DataFrame with one row per (guide, elbo, group), group "all" being every reported
    parameter together: ``mean`` and ``sem`` (arrays: the mean gradient and its standard error),
    ``mean_norm``, ``variance`` (trace of the covariance), ``snr`` (||E g|| / sqrt(tr Cov g)),
    ``size`` (number of scalars), ``seconds_per_step``, ``num_draws``.
    """
    if num_draws < 2:
        raise ValueError(f"num_draws must be at least 2 to estimate a variance, got {num_draws}")
    if not guides:
        raise ValueError("no guides to compare")
    estimators = _labelled(elbos)
    if pairs is None:
        pairs = [(g, e) for g in guides for e in estimators]
    unknown = sorted({g for g, _ in pairs} - set(guides))
    if unknown:
        raise ValueError(f"unknown guide label(s) {', '.join(unknown)}; the guides are {', '.join(guides)}")
    rows = []
    for label, spec in pairs:
        trained, guide = _as_pair(model, guides[label])
        call_args, scale = (args, None) if data is None else _minibatch(trained, data, mask, batch_size)
        pyro.set_rng_seed(seed)
        estimator = make_estimator(estimators.get(spec, spec), trained, num_particles)
        draws, seconds = gradient_draws(trained, guide, estimator, *call_args, num_draws=num_draws,
                                        warmup=warmup, scale=scale, **(kwargs or {}))
        if not draws:
            continue
        draws["all"] = np.concatenate(list(draws.values()), axis=1)
        for group, values in draws.items():
            rows.append({"guide": label, "elbo": spec if isinstance(spec, str) else elbo_label(spec),
                         "group": group, **gradient_statistics(values), "seconds_per_step": seconds,
                         "num_draws": num_draws})
    return pd.DataFrame(rows)


def training_curves(
    model,
    guide,
    data=None,
    elbo="trace",
    *,
    args: tuple = (),
    kwargs: dict | None = None,
    mask=None,
    steps: int = 200,
    lr: float = 1e-2,
    batch_size: int | None = None,
    eval_every: int = 20,
    num_samples: int = 20,
    num_particles: int = 1,
    initialize: bool = False,
    seed: int = 0,
) -> pd.DataFrame:
    """Train (model, guide) with :func:`dlvm.inference.fit` (Adam on ``elbo``, a name or an
    instance) and record the bounds as training goes.

    At step 0, every ``eval_every`` steps and after the last, :func:`dlvm.inference.evaluate`
    gives the ELBO and IWAE-K (``num_samples`` draws) and, where the model has ``log_marginal``,
    the exact log p(x) and the gap exact - ELBO: per row for row ``data``, for the whole data set
    with ``args``. Returns a DataFrame [step, seconds (training time only), elbo, iwae,
    log_likelihood, gap].
    """
    if steps < 1:
        raise ValueError(f"steps must be positive, got {steps}")
    rows = None if data is None else model_observations(model, data, mask)

    def bounds(state) -> dict:
        if rows is None:
            summary = evaluate(model, guide, args=args, kwargs=kwargs, num_samples=num_samples).summary()
        else:
            summary = evaluate(model, guide, *rows, num_samples=num_samples).summary()
        return {k: summary.get(k) for k in ("elbo", "iwae", "log_likelihood", "gap")}

    every = EvaluateEvery(eval_every, bounds)
    data_args = {} if rows is None else {"data": rows[0], "mask": rows[1], "batch_size": batch_size,
                                        "epochs": steps, "initialize": initialize}
    fit(model, guide, args=args, kwargs=kwargs, elbo=elbo, lr=lr, steps=steps, num_particles=num_particles,
        seed=seed, progress=False, hooks=[every], device=None, **data_args)
    return pd.DataFrame(every.records, columns=["step", "seconds", "elbo", "iwae", "log_likelihood", "gap"])
