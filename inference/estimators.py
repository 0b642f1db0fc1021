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

import itertools
import math
import time
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import pyro
import torch

from .data import as_observations
from .elbos import make_elbo
from .evaluate import evaluate

#: parameter groups whose name contains this are auxiliary (baseline networks): not reported
AUXILIARY = "baseline"


class ScopedELBO:
    """An ELBO estimator with a parameter store of its own.

    dlvm keeps every parameter in its module (``module_local_params``), but Pyro's decaying-average
    baseline still keeps its running average with ``pyro.param`` in the global store, outside any
    module: two estimators (or two fits) on sites of the same name would share and overwrite it.
    This wrapper runs every call in a private store, so each estimator keeps its own average.
    """

    def __init__(self, elbo):
        self.elbo = elbo
        self.state = None

    def _scoped(self, method, *args, **kwargs):
        with pyro.get_param_store().scope(self.state) as state:
            out = getattr(self.elbo, method)(*args, **kwargs)
        self.state = state
        return out

    def loss(self, *args, **kwargs):
        return self._scoped("loss", *args, **kwargs)

    def loss_and_grads(self, *args, **kwargs):
        return self._scoped("loss_and_grads", *args, **kwargs)


def make_estimator(spec: str, model, num_particles: int = 1) -> ScopedELBO:
    """The estimator called ``spec`` ("trace", "tracegraph", "renyi:0.5", ...) for ``model``."""
    name, _, option = spec.partition(":")
    alpha = 0.0
    if option:
        if name != "renyi":
            raise ValueError(f"only renyi takes an option (renyi:ALPHA), got {spec!r}")
        try:
            alpha = float(option)
        except ValueError:
            raise ValueError(f"renyi alpha must be a number, got {option!r}") from None
    elbo = make_elbo(name, num_particles=num_particles, alpha=alpha,
                     max_plate_nesting=getattr(model, "max_plate_nesting", 1))
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


def parameter_groups(model, guide) -> dict[str, list[torch.nn.Parameter]]:
    """Trainable parameters grouped by owner and top-level attribute ("model.loadings",
    "guide.encoder", ...; wrappers such as a baseline are looked through), without baseline
    networks; a parameter shared by model and guide counts once."""
    groups: dict[str, list] = {}
    seen = set()
    for owner, module in (("model", model), ("guide", guide)):
        root = _group_root(module)
        for name, p in root.named_parameters():
            if not p.requires_grad or id(p) in seen or AUXILIARY in name:
                continue
            seen.add(id(p))
            top = name.split(".")[0].removesuffix("_unconstrained")
            groups.setdefault(f"{owner}.{top}", []).append(p)
    return groups


def _auxiliary_parameters(model, guide) -> list[torch.nn.Parameter]:
    return [p for m in (model, guide) for n, p in m.named_parameters() if AUXILIARY in n and p.requires_grad]


def model_observations(model, data, mask):
    """(x, mask) as tensors in the model's dtype and on its device."""
    ref = next(itertools.chain(model.parameters(), model.buffers()), None)
    if ref is None:
        return as_observations(data, mask, dtype=torch.get_default_dtype())
    return as_observations(data, mask, dtype=ref.dtype, device=ref.device)


def _as_pair(model, entry):
    """A guides-dict entry is a guide (paired with ``model``) or a (model_to_train, guide) pair."""
    return entry if isinstance(entry, tuple) else (model, entry)


def gradient_draws(model, guide, estimator, x, mask=None, *, size=None, num_draws=100, warmup=0,
                   lr=1e-2) -> tuple[dict[str, np.ndarray], float]:
    """``num_draws`` gradients of the negative ELBO on the fixed batch ``x``.

    Returns ({group: (num_draws, P) array}, mean seconds per ``loss_and_grads``). Before the draws,
    ``warmup`` steps adapt the baselines only (decaying averages, and baseline networks by Adam
    with step ``lr``); the model and guide parameters never change.
    """
    groups = parameter_groups(model, guide)
    params = [p for ps in groups.values() for p in ps]
    auxiliary = _auxiliary_parameters(model, guide)
    optim = torch.optim.Adam(auxiliary, lr=lr) if auxiliary else None
    for _ in range(warmup):
        for p in params + auxiliary:
            p.grad = None
        estimator.loss_and_grads(model, guide, x, mask, size=size)
        if optim is not None:
            optim.step()
    draws = {g: [] for g in groups}
    seconds = 0.0
    for _ in range(num_draws):
        for p in params + auxiliary:
            p.grad = None
        began = time.perf_counter()
        estimator.loss_and_grads(model, guide, x, mask, size=size)
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


def compare_estimators(
    model,
    guides: Mapping,
    data,
    elbos: Sequence[str] = ("trace", "tracegraph"),
    num_draws: int = 100,
    *,
    mask=None,
    pairs: Sequence[tuple[str, str]] | None = None,
    batch_size: int | None = None,
    num_particles: int = 1,
    warmup: int = 20,
    seed: int = 0,
) -> pd.DataFrame:
    """Gradient statistics of each (guide, estimator) pair on one fixed minibatch.

    Args:
        model: a dlvm model (None when every entry of ``guides`` is a pair).
        guides: label -> guide (paired with ``model``) or label -> (model_to_train, guide), e.g.
            from :func:`dlvm.guides.pair`.
        data: rows (N, ...); the first ``batch_size`` rows (all by default) are the minibatch, and
            the ``"data"`` plate scales it to N rows, as in training.
        elbos: estimator names (see the module docstring), crossed with every guide unless
            ``pairs`` lists the (guide label, estimator) pairs to run.
        num_draws: gradient draws per pair; ``warmup`` baseline-only steps precede them.

    Returns a DataFrame with one row per (guide, elbo, group), group "all" being every reported
    parameter together: ``mean`` and ``sem`` (arrays: the mean gradient and its standard error),
    ``mean_norm``, ``variance`` (trace of the covariance), ``snr``, ``size`` (number of scalars),
    ``seconds_per_step``, ``num_draws``.
    """
    if num_draws < 2:
        raise ValueError(f"num_draws must be at least 2 to estimate a variance, got {num_draws}")
    if not guides:
        raise ValueError("no guides to compare")
    if pairs is None:
        pairs = [(g, e) for g in guides for e in elbos]
    unknown = sorted({g for g, _ in pairs} - set(guides))
    if unknown:
        raise ValueError(f"unknown guide label(s) {', '.join(unknown)}; the guides are {', '.join(guides)}")
    x, mask = model_observations(_as_pair(model, guides[pairs[0][0]])[0], data, mask)
    n = x.shape[0]
    batch = n if batch_size is None else min(int(batch_size), n)
    xb, mb = x[:batch], None if mask is None else mask[:batch]
    rows = []
    for label, spec in pairs:
        trained, guide = _as_pair(model, guides[label])
        pyro.set_rng_seed(seed)
        estimator = make_estimator(spec, trained, num_particles)
        draws, seconds = gradient_draws(trained, guide, estimator, xb, mb, size=n,
                                        num_draws=num_draws, warmup=warmup)
        if not draws:
            continue
        draws["all"] = np.concatenate(list(draws.values()), axis=1)
        for group, values in draws.items():
            rows.append({"guide": label, "elbo": spec, "group": group, **gradient_statistics(values),
                         "seconds_per_step": seconds, "num_draws": num_draws})
    return pd.DataFrame(rows)


def training_curves(
    model,
    guide,
    data,
    elbo: str = "trace",
    *,
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
    """Train (model, guide) by Adam on ``elbo`` and record the bounds as training goes.

    Every ``eval_every`` steps (and at step 0) the whole data set is evaluated with
    :func:`dlvm.inference.evaluate`: ELBO and IWAE-K (``num_samples`` draws) per row and, where
    the model has ``log_marginal``, the exact log p(x) per row and the gap exact - ELBO. Returns
    a DataFrame [step, seconds (training time only), elbo, iwae, log_likelihood, gap].
    """
    if steps < 1 or eval_every < 1:
        raise ValueError(f"steps and eval_every must be positive, got {steps} and {eval_every}")
    pyro.set_rng_seed(seed)
    x, mask = model_observations(model, data, mask)
    n = x.shape[0]
    batch = n if batch_size is None else min(int(batch_size), n)
    if initialize and hasattr(model, "initialize"):
        model.initialize(x, mask)
    estimator = make_estimator(elbo, model, num_particles)
    # one untimed call creates lazily built parameters before the optimizer sees them
    estimator.loss(model, guide, x[:batch], None if mask is None else mask[:batch], size=n)
    params = list({id(p): p for m in (model, guide) for p in m.parameters() if p.requires_grad}.values())
    optim = torch.optim.Adam(params, lr=lr)
    generator = torch.Generator().manual_seed(seed)
    records, seconds = [], 0.0

    def record(step):
        summary = evaluate(model, guide, x, mask, num_samples=num_samples).summary()
        records.append({"step": step, "seconds": seconds, "elbo": summary["elbo"], "iwae": summary["iwae"],
                        "log_likelihood": summary["log_likelihood"], "gap": summary["gap"]})

    record(0)
    for step in range(1, steps + 1):
        index = torch.randperm(n, generator=generator)[:batch].to(x.device)
        began = time.perf_counter()
        optim.zero_grad()
        estimator.loss_and_grads(model, guide, x[index], None if mask is None else mask[index], size=n)
        optim.step()
        seconds += time.perf_counter() - began
        if step % eval_every == 0 or step == steps:
            record(step)
    return pd.DataFrame(records, columns=["step", "seconds", "elbo", "iwae", "log_likelihood", "gap"])
