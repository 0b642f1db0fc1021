"""The generic SVI engine: ``fit(model, guide, data, elbo=...)`` for every dlvm model.

The engine knows nothing of the model or the estimator: it draws minibatches, calls
``elbo.loss_and_grads(model, guide, x, mask, size=N)`` (the ``"data"`` plate scales each batch to
the N rows, so a step is an unbiased estimate of the full-data ELBO, eq. 6.7), and steps a PyTorch
optimizer over the parameters that live in the two modules.
"""
from __future__ import annotations

import copy
import itertools
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pyro
import pyro.poutine as poutine
import torch
from pyro.optim.clipped_adam import ClippedAdam
from tqdm.auto import tqdm

from .checkpoint import load_checkpoint, load_state, save_checkpoint
from .data import as_observations, resolve_device
from .distributed import (
    ShardedBatches, broadcast_modules, broadcast_object, gather_objects, rank_and_world, reduce_gradients,
    reduce_sum,
)
from .elbos import make_elbo
from .em import DEFAULT_TOL, fit_em
from .streaming import INITIALIZE_ROWS, RowSource, chunks, row_loader

OPTIMIZERS = ("adam", "clippedadam", "lbfgs", "em")
CHECKPOINT_NAME = "checkpoint.pt"


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; training stopped."""


@dataclass
class FitResult:
    """What :func:`fit` returns: the trained modules and the per-epoch history.

    ``history`` has one row per epoch: ``epoch``, ``elbo`` (training ELBO per row, the mean of
    the epoch's minibatch estimates), ``val_elbo`` (per validation row, NaN without validation
    data) and ``seconds`` (cumulative training time).
    """

    model: torch.nn.Module
    guide: torch.nn.Module
    history: pd.DataFrame
    elbo: str
    seconds: float
    best_epoch: int
    stopped_early: bool = False
    config: dict = field(default_factory=dict)
    converged: bool | None = None
    epochs_run: int | None = None


def latent_sites(trace) -> dict:
    """The latent sample sites of a trace ({name: site}): sampled, not observed, not a plate's
    subsample."""
    return {
        name: site for name, site in trace.nodes.items()
        if site["type"] == "sample" and not site["is_observed"] and type(site["fn"]).__name__ != "_Subsample"
    }


def guide_latents(guide, x, mask=None) -> dict:
    """The sample sites the guide draws (its latents) for the batch ``x``: {name: site}."""
    with poutine.block():
        return latent_sites(poutine.trace(guide).get_trace(x, mask))


def _take(x, mask, index, device):
    index = index.to(device)
    return x[index], None if mask is None else mask[index]


def _streamed(source, sampler, dtype, device):
    """(global minibatch rows, x, None) for each minibatch of ``sampler`` read from ``source``."""
    for step, xb in enumerate(row_loader(source, sampler, device)):
        global_rows = min(sampler.batch_size, sampler.n - step * sampler.batch_size)
        if xb.shape[0] == 0:  # this rank's shard of a batch smaller than the number of ranks
            yield global_rows, xb.to(device=device, dtype=dtype), None
            continue
        xb = xb.to(device, non_blocking=True)
        yield (global_rows, *as_observations(xb, dtype=dtype, device=device))


def _rng_state(device: torch.device) -> list[torch.Tensor]:
    """The random states a fit draws from: the CPU's, and the GPU's when it runs on one."""
    return [torch.get_rng_state(), *([torch.cuda.get_rng_state(device)] if device.type == "cuda" else [])]


def _set_rng_state(states, device: torch.device) -> None:
    torch.set_rng_state(states[0].cpu())
    if device.type == "cuda" and len(states) > 1:
        torch.cuda.set_rng_state(states[1].cpu(), device)


def _total_loss(elbo, model, guide, x, mask, batch_size, rank=0, world=1, dtype=None, device="cpu"):
    """Summed -ELBO over all rows of (x, mask) (tensors, or a RowSource read in chunks), evaluated
    in batches without gradients; with ``world`` ranks each takes a share and the sums are added."""
    total = 0.0
    with torch.no_grad():
        for xb, mb in chunks(x, mask, batch_size, rank, world):
            if isinstance(x, RowSource):
                xb, mb = as_observations(xb, dtype=dtype, device=device)
            total += elbo.loss(model, guide, xb, mb)
    return reduce_sum(total, device) if world > 1 else total


def minibatch_loss_and_grads(estimator, model, guide, xb, mb, *, size, global_rows, params, world=1) -> float:
    """The loss (-ELBO estimate scaled to ``size`` rows, eq. 6.7) of one minibatch of
    ``global_rows`` rows, with its gradient in the parameters' ``.grad``.

    In one process (xb, mb) is the whole minibatch. With ``world`` > 1 ranks it is this rank's
    shard of B_r rows: the loss and gradient are weighted by B_r / global_rows and summed over
    the ranks (:mod:`dlvm.inference.distributed`), giving every rank the single-process values. A
    distribution that receives non-finite parameters then gives a NaN loss on every rank
    instead of an error on one.
    """
    if world == 1:
        return estimator.loss_and_grads(model, guide, xb, mb, size=size)
    loss = 0.0
    if xb.shape[0]:
        try:
            loss = estimator.loss_and_grads(model, guide, xb, mb, size=size)
        except ValueError as err:
            if "invalid values" not in str(err):
                raise
            loss = math.nan
    return reduce_gradients(params, loss, xb.shape[0] / global_rows)


def _minibatch_loss(estimator, model, guide, xb, mb, *, size, global_rows, world=1) -> float:
    """The loss of :func:`minibatch_loss_and_grads` without gradients."""
    if world == 1:
        return estimator.loss(model, guide, xb, mb, size=size)
    loss = estimator.loss(model, guide, xb, mb, size=size) if xb.shape[0] else 0.0
    return reduce_sum(loss * xb.shape[0] / global_rows, xb.device)


def _make_optimizer(name, params, lr, clip_norm):
    if name == "adam":
        return torch.optim.Adam(params, lr=lr)
    if name == "clippedadam":
        return ClippedAdam(params, lr=lr, clip_norm=clip_norm or 10.0)
    if name == "lbfgs":
        return torch.optim.LBFGS(
            params, lr=lr, max_iter=20, history_size=20, line_search_fn="strong_wolfe",
            tolerance_grad=1e-7, tolerance_change=1e-9,
        )
    raise ValueError(f"unknown optimizer {name!r}; choose one of: {', '.join(OPTIMIZERS)}")


def _parameters(*modules):
    seen, params = set(), []
    for module in modules:
        for p in module.parameters():
            if id(p) not in seen and p.requires_grad:
                seen.add(id(p))
                params.append(p)
    return params


def _non_finite(what: str, epoch: int, step: int, checkpoint: Path | None) -> NonFiniteLossError:
    kept = f"; the last good checkpoint is kept at {checkpoint}" if checkpoint and checkpoint.exists() else ""
    return NonFiniteLossError(f"{what} at epoch {epoch}, step {step}{kept}")


def _check_finite(loss: float, epoch: int, step: int, checkpoint: Path | None):
    if not math.isfinite(loss):
        raise _non_finite(f"loss became {loss}", epoch, step, checkpoint)


def _guarded(step_fn, epoch: int, step: int, checkpoint: Path | None) -> float:
    """Run one step; a distribution that received NaN/inf parameters is a non-finite loss too."""
    try:
        return step_fn()
    except ValueError as err:
        if "invalid values" not in str(err):
            raise
        raise _non_finite("a distribution received non-finite parameters", epoch, step, checkpoint) from None


def fit(
    model,
    guide,
    data,
    *,
    mask=None,
    elbo: str = "trace",
    optimizer: str = "adam",
    lr: float | None = None,
    lr_decay: float = 1.0,
    epochs: int = 100,
    batch_size: int | None = None,
    num_particles: int = 1,
    alpha: float = 0.0,
    device: str | torch.device = "auto",
    dtype: torch.dtype | None = None,
    seed: int = 0,
    val_data=None,
    val_mask=None,
    early_stopping: int | None = None,
    clip_norm: float | None = None,
    checkpoint_dir: str | Path | None = None,
    checkpoint_every: float = 10.0,
    resume: bool = False,
    initialize: bool = True,
    progress: bool = True,
    config: dict | None = None,
    distributed: bool = False,
    tol: float | None = None,
) -> FitResult:
    """Train ``guide`` and ``model`` by stochastic variational inference.

    Args:
        model, guide: PyroModules with the signature ``(x, mask=None, size=None)``.
        data: array-like (N, ...); ``mask`` (same shape, True = observed) marks missing entries.
            Or a :class:`~dlvm.inference.streaming.RowSource` (rows read from disk per minibatch
            through a DataLoader; ``initialize`` then sees a random subsample of
            ``INITIALIZE_ROWS`` rows): memory independent of N.
        elbo: estimator name (:data:`dlvm.inference.elbos.ELBO_NAMES`); ``alpha`` for ``renyi``.
        optimizer: ``adam``, ``clippedadam`` (Pyro's ClippedAdam) or ``lbfgs`` (full batch; the
            loss must be deterministic, i.e. the guide samples nothing). ``lr`` defaults to 1e-2
            (1.0 for L-BFGS) and is multiplied by ``lr_decay`` after every epoch.
        epochs: passes over the data; ``batch_size`` None means full batch.
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``; ``dtype`` defaults to the model's.
        val_data, val_mask: held-out rows whose ELBO is recorded every epoch.
        early_stopping: patience in epochs on the validation ELBO (training ELBO without
            validation data); the best parameters are restored at the end.
        clip_norm: clip the gradient norm at this value before each step.
        checkpoint_dir: write ``checkpoint.pt`` there at the end of an epoch once
            ``checkpoint_every`` seconds have passed since the last one, and after the last epoch;
            with ``resume`` continue from it (same seed -> the same result as an uninterrupted run).
        initialize: call ``model.initialize(x, mask)`` (data-dependent start) where it exists.
        distributed: data parallel over the ranks of the initialised ``torch.distributed``
            process group (:mod:`dlvm.inference.distributed`): every rank calls ``fit`` with the
            same arguments, rank 0's parameters are broadcast, each rank computes the ELBO of its
            shard of every minibatch, the gradients are averaged so each step equals the
            single-process step on the same ``batch_size`` rows, and rank 0 alone writes the
            checkpoint (resume reads it on rank 0 and sends it to the others).
        tol: ``optimizer="em"``: stop when the log-likelihood per observation changes by less
            than this (default 1e-6); ``epochs`` caps the EM iterations.
    """
    if optimizer == "em":  # closed-form EM (dlvm.inference.em): the guide has nothing to learn
        pyro.set_rng_seed(seed)
        em = fit_em(model, data, mask, tol=DEFAULT_TOL if tol is None else tol, max_iter=epochs,
                    initialize=initialize, progress=progress)
        return FitResult(model=model, guide=guide, history=em.history.assign(val_elbo=math.nan)[
            ["epoch", "elbo", "val_elbo", "seconds"]], elbo=elbo, seconds=em.seconds, best_epoch=em.epochs_run,
            config=config or {}, converged=em.converged, epochs_run=em.epochs_run)
    if epochs < 1:
        raise ValueError(f"epochs must be at least 1, got {epochs}")
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {optimizer!r}; choose one of: {', '.join(OPTIMIZERS)}")
    device = resolve_device(device)
    rank, world = 0, 1
    if distributed:
        if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
            raise ValueError("distributed=True needs an initialised torch.distributed process group (run under torchrun)")
        rank, world = rank_and_world()
        if elbo == "renyi" and num_particles > 1:
            raise ValueError("the renyi bound with several particles is not a sum over rows: it cannot be split over ranks")
    pyro.set_rng_seed(seed)
    model.to(device)
    guide.to(device)
    if dtype is None:
        # a Bayesian model may hold buffers only (its globals are latent)
        dtype = next(itertools.chain(model.parameters(), model.buffers()), torch.empty(0)).dtype
    streaming = isinstance(data, RowSource)
    if streaming:
        if mask is not None:
            raise ValueError("a streamed data source has no mask: missing values are not supported when streaming")
        x, n = data, len(data)
        # data-dependent starts and the parameter probe see a bounded random subsample
        start_x, start_mask = as_observations(data.subsample(INITIALIZE_ROWS, seed), dtype=dtype, device=device)
    else:
        x, mask = as_observations(data, mask, dtype=dtype, device=device)
        n = x.shape[0]
        start_x, start_mask = x, mask
    if val_data is not None:
        if isinstance(val_data, RowSource):
            val_x, val_mask = val_data, None
        else:
            val_x, val_mask = as_observations(val_data, val_mask, dtype=dtype, device=device)
    batch_size = n if batch_size is None else int(batch_size)
    if batch_size < 1:
        raise ValueError(f"batch size must be at least 1, got {batch_size}")
    batch_size = min(batch_size, n)
    lr = (1.0 if optimizer == "lbfgs" else 1e-2) if lr is None else lr

    estimator = make_elbo(
        elbo, num_particles=num_particles, alpha=alpha,
        max_plate_nesting=getattr(model, "max_plate_nesting", 1),
    )
    checkpoint = Path(checkpoint_dir) / CHECKPOINT_NAME if checkpoint_dir else None
    state = None
    if rank == 0 and resume and checkpoint and checkpoint.exists():
        state = load_checkpoint(checkpoint, map_location="cpu" if world > 1 else device)
    state = broadcast_object(state) if world > 1 else state
    if initialize and state is None and hasattr(model, "initialize"):
        model.initialize(start_x, start_mask)
    # one trace of guide and model creates any lazily built parameters before the optimizer
    probe_x, probe_m = start_x[:2], None if start_mask is None else start_mask[:2]
    latents = list(guide_latents(guide, probe_x, probe_m))
    with poutine.block():
        poutine.trace(poutine.replay(model, poutine.trace(guide).get_trace(probe_x, probe_m))).get_trace(probe_x, probe_m)
    if optimizer == "lbfgs":
        if latents:
            raise ValueError(
                "L-BFGS needs a deterministic loss, but the guide samples "
                f"{', '.join(latents)}: use the exact guide (or the adam optimizer)"
            )
        batch_size = n
    params = _parameters(model, guide)
    if not params:
        raise ValueError("the model and guide have no parameters to train")
    if world > 1:
        broadcast_modules(model, guide)
        if rank > 0:  # rank 0 keeps the single-process random stream; the others draw their own
            torch.manual_seed(seed * 1_000_003 + 7919 * rank)
    optim = _make_optimizer(optimizer, params, lr, clip_norm)
    if not 0 < lr_decay <= 1:
        raise ValueError(f"lr_decay must be in (0, 1], got {lr_decay}")
    schedule = torch.optim.lr_scheduler.ExponentialLR(optim, gamma=lr_decay)

    history: list[dict] = []
    best = {"value": -math.inf, "epoch": 0, "model": None, "guide": None}
    start_epoch, elapsed = 1, 0.0
    if state is not None:
        load_state(model, state["model"], "model")
        load_state(guide, state["guide"], "guide")
        optim.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        ranks = state.get("rng_ranks") or []
        if len(ranks) == world:
            _set_rng_state(ranks[rank], device)
        elif rank == 0:
            _set_rng_state([state["rng"], *([state["cuda_rng"]] if "cuda_rng" in state else [])], device)
        history = list(state["history"])
        best = dict(state["best"])
        start_epoch = int(state["epoch"]) + 1
        elapsed = float(history[-1]["seconds"]) if history else 0.0

    stopped_early = False
    last_saved = time.perf_counter()
    bar = tqdm(range(start_epoch, epochs + 1), desc="fit", disable=not progress or rank > 0, leave=False)
    sampler = ShardedBatches(n, batch_size, seed, rank, world, pairs=not streaming)
    for epoch in bar:
        began = time.perf_counter()
        sampler.set_epoch(epoch)
        losses = []
        batches = _streamed(x, sampler, dtype, device) if streaming else (
            (len(index), *_take(x, mask, local, device)) for index, local in sampler)
        for step, (global_rows, xb, mb) in enumerate(batches, start=1):
            rows = dict(size=n, global_rows=global_rows, world=world)
            if optimizer == "lbfgs":
                def closure():
                    # L-BFGS minimises the loss per row (its tolerances then mean the same for
                    # any N), in float64 so that the line search sees changes far below 1e-7
                    optim.zero_grad()
                    value = minibatch_loss_and_grads(estimator, model, guide, xb, mb, params=params, **rows) / n
                    for p in params:
                        if p.grad is not None:
                            p.grad.div_(n)
                    return torch.tensor(value, dtype=torch.float64)
                iterations = optim.state[params[0]].get("n_iter", 0)
                _guarded(lambda: optim.step(closure), epoch, step, checkpoint)
                # no iteration taken: the gradient was already below tolerance_grad
                lbfgs_done = optim.state[params[0]].get("n_iter", 0) == iterations
                loss = _guarded(lambda: _minibatch_loss(estimator, model, guide, xb, mb, **rows), epoch, step, checkpoint)
            else:
                optim.zero_grad()
                loss = _guarded(
                    lambda: minibatch_loss_and_grads(estimator, model, guide, xb, mb, params=params, **rows),
                    epoch, step, checkpoint,
                )
                _check_finite(loss, epoch, step, checkpoint)
                if clip_norm is not None and optimizer != "clippedadam":
                    torch.nn.utils.clip_grad_norm_(params, clip_norm)
                optim.step()
            _check_finite(loss, epoch, step, checkpoint)
            losses.append(loss)
        schedule.step()
        train_elbo = -sum(losses) / len(losses) / n
        val_elbo = math.nan
        if val_data is not None:
            val_elbo = -_total_loss(estimator, model, guide, val_x, val_mask, batch_size, rank, world,
                                    dtype, device) / len(val_x)
        elapsed += time.perf_counter() - began
        history.append({"epoch": epoch, "elbo": train_elbo, "val_elbo": val_elbo, "seconds": elapsed})
        monitored = val_elbo if val_data is not None else train_elbo
        if monitored > best["value"]:
            best = {
                "value": monitored, "epoch": epoch,
                "model": copy.deepcopy(model.state_dict()) if early_stopping else None,
                "guide": copy.deepcopy(guide.state_dict()) if early_stopping else None,
            }
        bar.set_postfix(elbo=f"{train_elbo:.4g}", val=f"{val_elbo:.4g}")
        stopped_early = bool(early_stopping) and epoch - best["epoch"] >= early_stopping
        converged = optimizer == "lbfgs" and (lbfgs_done or (
            len(history) > 1 and abs(history[-2]["elbo"] - train_elbo) < 1e-10 * (1 + abs(train_elbo))
        ))
        finished = stopped_early or converged or epoch == epochs
        save = checkpoint is not None and (finished or time.perf_counter() - last_saved >= checkpoint_every)
        if world > 1:  # rank 0's clock decides; every rank sends its random state along
            save = broadcast_object(save)
            rng_ranks = gather_objects(_rng_state(device)) if save else None
        if save and rank == 0:
            save_checkpoint(checkpoint, {
                "model": model.state_dict(), "guide": guide.state_dict(),
                "optimizer": optim.state_dict(), "schedule": schedule.state_dict(),
                "epoch": epoch, "history": history,
                "rng": torch.get_rng_state(), "best": best, "config": config or {},
                **({"cuda_rng": torch.cuda.get_rng_state(device)} if device.type == "cuda" else {}),
                **({"rng_ranks": rng_ranks} if world > 1 else {}),
            })
        if save:
            last_saved = time.perf_counter()
        if finished:
            break
    bar.close()
    if early_stopping and best["model"] is not None:
        model.load_state_dict(best["model"])
        guide.load_state_dict(best["guide"])
    return FitResult(
        model=model, guide=guide, history=pd.DataFrame(history, columns=["epoch", "elbo", "val_elbo", "seconds"]),
        elbo=elbo, seconds=elapsed, best_epoch=int(best["epoch"]), stopped_early=stopped_early,
        config=config or {},
    )
