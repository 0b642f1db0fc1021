"""The SVI engine: ``fit(model, guide, ...)`` for any Pyro model and guide.

Two ways to feed a fit, one loop:

* ``fit(model, guide, args=(...), kwargs={...}, steps=S)``: every step calls
  ``elbo.loss_and_grads(model, guide, *args, **kwargs)`` exactly as :meth:`pyro.infer.SVI.step`
  does (a model that subsamples itself with ``pyro.plate("data", N, subsample_size=B)`` works as
  it is). With the same seed, optimizer and learning rate the losses are SVI's, step for step.
* ``fit(model, guide, data, epochs=E, batch_size=B)``: ``data`` is an array (N, ...) or a tuple of
  aligned arrays (covariates and targets), or a :class:`~dlvm.inference.streaming.RowSource`;
  each step calls the model and guide on the rows of one minibatch (then ``*args``, ``**kwargs``)
  and scales the sites inside the plate ``plate`` (default ``"data"``) by N / B, so a step is an
  unbiased estimate of the full-data ELBO (eq. 6.7) while global latents are not scaled.

The loop (:func:`train`) knows nothing of the model or the estimator: a step is the objective's
loss and gradients plus an optimizer step, and everything else is a hook (validation, early
stopping, convergence, checkpoints, progress, evaluation every k steps). :func:`fit` looks at the
estimator once: it refuses the renyi bound with several particles in a distributed fit (that
bound is not a sum over rows, so it cannot be split over ranks).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pyro
import pyro.poutine as poutine
import torch

from ..models.sites import latent_sites

from .checkpoint import load_checkpoint, save_checkpoint
from .data import as_observations, resolve_device
from .distributed import (
    ShardedBatches, broadcast_modules, broadcast_object, rank_and_world, reduce_gradients, reduce_sum,
)
from .elbos import elbo_label
from .em import DEFAULT_TOL, fit_em
from .hooks import (
    Checkpointing, Convergence, EarlyStopping, Progress, Validation, restore_checkpoint,
)
from .objective import Objective, RowScale
from .optim import StepSchedule, Stepper
from .streaming import INITIALIZE_ROWS, RowSource, row_loader

CHECKPOINT_NAME = "checkpoint.pt"


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; training stopped."""


@dataclass
class FitResult:
    """What :func:`fit` returns.

    ``history`` has one row per epoch (one per step when fitting on ``args``): ``epoch``,
    ``elbo`` (per row for row data, else for the whole data set), ``val_elbo`` (NaN without
    validation data) and ``seconds`` (cumulative). ``loss`` is the loss of every step, as
    :meth:`pyro.infer.SVI.step` returns it; ``params`` maps each parameter's name to its
    constrained value (``model.``/``guide.`` + the module path, or its param-store name).
    """

    model: object
    guide: object
    history: pd.DataFrame
    loss: list
    params: dict
    elbo: str
    seconds: float
    best_epoch: int
    stopped_early: bool = False
    converged: bool = False
    epochs_run: int = 0
    config: dict = field(default_factory=dict)


@dataclass
class Batch:
    """One step's arguments: ``rows`` local rows of a ``global_rows`` minibatch (None: no rows)."""

    args: tuple
    kwargs: dict
    rows: int | None = None
    global_rows: int | None = None


@dataclass
class Training:
    """The state of a fit that hooks read and change."""

    objective: Objective
    stepper: Stepper
    n: int | None
    plate: str
    world: int = 1
    epoch: int = 0
    step: int = 0
    epoch_step: int = 0
    elapsed: float = 0.0
    losses: list = field(default_factory=list)
    history: list = field(default_factory=list)
    record: dict = field(default_factory=dict)
    best: dict = field(default_factory=dict)
    checkpoint: Path | None = None
    stop: bool = False
    converged: bool = False
    stopped_early: bool = False
    best_epoch: int = 0

    def per_unit(self, loss: float) -> float:
        """A summed loss per row (row data) or as it is (arguments)."""
        return loss / self.n if self.n else loss


def guide_latents(guide, *args, **kwargs) -> dict:
    """The sample sites the guide draws (its latents) when called with the arguments: {name: site}."""
    with poutine.block(), torch.no_grad():
        return latent_sites(poutine.trace(guide).get_trace(*args, **kwargs))


def _guarded(step_fn, state: Training, checkpoint: Path | None) -> float:
    """Run one step; a non-finite loss, or a distribution given NaN/inf parameters, stops the fit."""
    kept = f"; the last good checkpoint is kept at {checkpoint}" if checkpoint and checkpoint.exists() else ""
    where = f"at epoch {state.epoch}, step {state.epoch_step}{kept}"
    try:
        loss = step_fn()
    except ValueError as err:
        if "invalid values" not in str(err):
            raise
        raise NonFiniteLossError(f"a distribution received non-finite parameters {where}") from None
    if not math.isfinite(loss):
        raise NonFiniteLossError(f"loss became {loss} {where}")
    return loss


def _row_scale(batch: Batch, state: Training) -> RowScale | None:
    if batch.rows is None or batch.rows == state.n:
        return None
    return RowScale(state.plate, state.n / batch.rows)


def batch_loss_and_grads(state: Training, batch: Batch) -> float:
    """The loss of one batch (scaled to the N rows) with its gradient in ``.grad``; with several
    ranks the shards' losses and gradients are weighted by their rows and summed
    (:mod:`dlvm.inference.distributed`), giving every rank the single-process values."""
    scale = _row_scale(batch, state)
    if state.world == 1:
        loss = state.objective.loss_and_grads(batch.args, batch.kwargs, scale)
    else:
        loss = 0.0
        if batch.rows:
            try:
                loss = state.objective.loss_and_grads(batch.args, batch.kwargs, scale)
            except ValueError as err:
                if "invalid values" not in str(err):
                    raise
                loss = math.nan
        loss = reduce_gradients(state.objective.parameters(), loss, batch.rows / batch.global_rows)
    if scale is not None and scale.scaled == 0 and batch.rows and not state.objective.compiled:
        raise ValueError(
            f"minibatches need the model's rows in pyro.plate({state.plate!r}, ...), but no site lies in a "
            f"plate called {state.plate!r}: name the rows' plate so, or pass plate=NAME"
        )
    return loss


def batch_loss(state: Training, batch: Batch) -> float:
    """:func:`batch_loss_and_grads` without gradients."""
    loss = state.objective.loss(batch.args, batch.kwargs, _row_scale(batch, state)) if batch.rows != 0 else 0.0
    if state.world == 1:
        return loss
    return reduce_sum(loss * batch.rows / batch.global_rows, _device_of(state.objective))


def _device_of(objective) -> torch.device:
    params = objective.parameters()
    return params[0].device if params else torch.device("cpu")


def train(state: Training, batches, max_epochs: int, hooks=(), max_steps: int | None = None) -> Training:
    """The loop: for each epoch, a step per batch of ``batches(epoch)``, then the hooks."""
    for hook in hooks:
        hook.start(state)
    for epoch in range(state.epoch + 1, max_epochs + 1):
        state.epoch, state.record, began, losses = epoch, {}, time.perf_counter(), []
        for state.epoch_step, batch in enumerate(batches(epoch), start=1):
            state.step += 1
            loss = _guarded(lambda: state.stepper.step(state, batch, batch_loss_and_grads, batch_loss),
                            state, state.checkpoint)
            losses.append(loss)
            state.losses.append(loss)
            for hook in hooks:
                hook.after_step(state)
            if max_steps is not None and state.step >= max_steps:
                state.stop = True
                break
        state.stepper.end_epoch()
        state.elapsed += time.perf_counter() - began
        state.record.update(epoch=epoch, val_elbo=math.nan, elbo=-state.per_unit(sum(losses) / len(losses)), seconds=state.elapsed)
        state.history.append(state.record)
        for hook in hooks:
            hook.after_epoch(state)
        state.stop = state.stop or epoch == max_epochs
        for hook in hooks:
            hook.save(state)
        if state.stop:
            break
    for hook in hooks:
        hook.finish(state)
    return state


def _tensor_rows(data, mask, dtype, device) -> tuple[tuple, int]:
    """The aligned row tensors of ``data`` (an array, or a tuple of arrays) and their count.

    A single array is validated as observations (:func:`~dlvm.inference.data.as_observations`) and
    followed by its mask where one is given; in a tuple, floating arrays take ``dtype``.
    """
    if isinstance(data, (tuple, list)):
        if mask is not None:
            raise ValueError("a mask goes with a single data array; put it in the data tuple instead")
        rows = tuple(_as_rows(a, dtype, device) for a in data)
    else:
        x, mask = as_observations(data, mask, dtype=dtype, device=device)
        rows = (x,) if mask is None else (x, mask)
    lengths = sorted({len(r) for r in rows})
    if len(lengths) != 1:
        raise ValueError(f"the data arrays have different numbers of rows: {lengths}")
    return rows, lengths[0]


def _as_rows(array, dtype, device) -> torch.Tensor:
    t = torch.as_tensor(array)
    if t.ndim == 0:
        raise ValueError("every data array needs one row per observation (a leading dimension)")
    return t.to(device=device, dtype=dtype if t.is_floating_point() else None)


def _row_batches(rows, n, sampler, args, kwargs, dtype, device):
    """batches(epoch): the minibatches of an epoch as :class:`Batch` (rows, then ``args``)."""
    streaming = isinstance(rows, RowSource)

    def batches(epoch):
        sampler.set_epoch(epoch)
        if streaming:
            for step, xb in enumerate(row_loader(rows, sampler, device)):
                global_rows = min(sampler.batch_size, n - step * sampler.batch_size)
                xb = xb.to(device=device, dtype=dtype, non_blocking=True)
                yield Batch((xb, *args), kwargs, xb.shape[0], global_rows)
            return
        for index, local in sampler:
            local = local.to(device)
            yield Batch((*(r[local] for r in rows), *args), kwargs, len(local), len(index))
    return batches


def _argument_batches(args, kwargs):
    def batches(epoch):
        yield Batch(args, kwargs)
    return batches


def _model_dtype(model, dtype):
    if dtype is not None:
        return dtype
    if isinstance(model, torch.nn.Module):  # a Bayesian model may hold buffers only
        for t in (*model.parameters(), *model.buffers()):
            if t.is_floating_point():
                return t.dtype
    return torch.get_default_dtype()


def _place(model, guide, device):
    """Move the modules among model and guide to ``device`` (None: leave them); the device."""
    if device is None:
        return None
    device = resolve_device(device)
    for m in (model, guide):
        if isinstance(m, torch.nn.Module):
            m.to(device)
    return device


def _moved(values, device):
    """Tensors among ``values`` moved to ``device`` (None: as they are)."""
    if device is None:
        return values
    if isinstance(values, dict):
        return {k: v.to(device) if torch.is_tensor(v) else v for k, v in values.items()}
    return tuple(v.to(device) if torch.is_tensor(v) else v for v in values)


@dataclass
class Rows:
    """Row data prepared for a fit: the batches, the number of rows, the validation loss."""

    batches: object
    n: int
    validation: object = None


def _prepare_rows(model, data, mask, args, kwargs, batch_size, seed, dtype, device, initialize, world, rank,
                  val_data, val_mask, lbfgs) -> Rows:
    """Minibatches of ``data`` (tensors or a RowSource), the model's data-dependent start, and
    the validation rows."""
    streaming = isinstance(data, RowSource)
    if streaming:
        if mask is not None:
            raise ValueError("a streamed data source has no mask: missing values are not supported when streaming")
        rows, n = data, len(data)
        # data-dependent starts see a bounded random subsample
        start = as_observations(data.subsample(INITIALIZE_ROWS, seed or 0), dtype=dtype, device=device)
    else:
        rows, n = _tensor_rows(data, mask, dtype, device)
        start = rows[:2] if not isinstance(data, (tuple, list)) else None
    if initialize and start is not None and hasattr(model, "initialize"):
        model.initialize(*start) if len(start) == 2 else model.initialize(start[0], None)
    batch_size = n if batch_size is None or lbfgs else int(batch_size)
    if batch_size < 1:
        raise ValueError(f"batch size must be at least 1, got {batch_size}")
    sampler = ShardedBatches(n, min(batch_size, n), seed or 0, rank, world, pairs=not streaming)
    batches = _row_batches(rows, n, sampler, args, kwargs, dtype, device)
    validation = None if val_data is None else _validation_loss(
        val_data, val_mask, args, kwargs, batch_size, dtype, device, rank, world)
    return Rows(batches, n, validation)


def _validation_loss(val_data, val_mask, args, kwargs, batch_size, dtype, device, rank, world):
    """A function state -> (summed loss over the held-out rows, their number)."""
    streaming = isinstance(val_data, RowSource)
    rows, n = (val_data, len(val_data)) if streaming else _tensor_rows(val_data, val_mask, dtype, device)

    def total(state):
        loss = 0.0
        for k, start in enumerate(range(0, n, batch_size)):
            if k % world != rank:
                continue
            stop = min(start + batch_size, n)
            chunk = (as_observations(rows.rows(start, stop), dtype=dtype, device=device)[0],) if streaming else \
                tuple(r[start:stop] for r in rows)
            loss += state.objective.loss((*chunk, *args), kwargs)
        return (reduce_sum(loss, device) if world > 1 else loss), n
    return total


def declared_schedule(model, guide) -> StepSchedule | None:
    """The :class:`~dlvm.inference.optim.StepSchedule` the guide declares as ``step_schedule``,
    else the model's, else None."""
    for declarer in (guide, model):
        schedule = getattr(declarer, "step_schedule", None)
        if schedule is not None:
            return schedule
    return None


def _check_deterministic(stepper, guide, batch) -> None:
    if stepper.is_lbfgs:
        latents = guide_latents(guide, *batch.args, **batch.kwargs)
        if latents:
            raise ValueError(f"L-BFGS needs a deterministic loss, but the guide samples {', '.join(latents)}: "
                             "use the exact guide (or the adam optimizer)")


def fit(model, guide, data=None, *, args=(), kwargs=None, mask=None, elbo=None, optimizer="adam", lr=None,
        lr_decay: float = 1.0, step_decay: float | None = None, epochs: int | None = None, steps: int | None = None,
        tol: float | None = None, tol_window: int | None = None, batch_size: int | None = None, plate: str = "data",
        num_particles: int = 1,
        alpha: float | None = None, device=None, dtype=None, seed: int | None = 0, val_data=None, val_mask=None,
        early_stopping: int | None = None, clip_norm: float | None = None, checkpoint_dir=None,
        checkpoint_every: float = 10.0, resume: bool = False, initialize: bool = True, progress: bool = True,
        config: dict | None = None, distributed: bool = False, hooks=()) -> FitResult:
    """Train ``guide`` and ``model`` (any Pyro callables) by stochastic variational inference.

    Args:
        data: rows to minibatch (array (N, ...), tuple of aligned arrays, or RowSource), or None to
            call ``model(*args, **kwargs)`` as it is on every step. ``mask`` (x's shape, True =
            observed) marks missing entries of a single array and is passed after it.
        elbo: a name (``trace``, ``tracegraph``, ``traceenum``, ``renyi:0.5``, ...), a
            ``pyro.infer.ELBO`` instance, or None (Trace_ELBO, or TraceEnum_ELBO when sites are
            marked for enumeration); ``num_particles`` and ``alpha`` (Renyi) go with a name.
        optimizer: ``adam``, ``clippedadam``, ``lbfgs`` (deterministic losses only, full batch), a
            ``pyro.optim.PyroOptim`` or a function params -> torch optimizer; ``lr`` defaults to
            1e-2 (1.0 for L-BFGS) and is multiplied by ``lr_decay`` after every epoch.
        step_decay: multiply the gradients of the s-th update by ``step_decay ** s``
            (:class:`~dlvm.inference.optim.StepSchedule`); None: the schedule the guide (or the
            model) declares as ``step_schedule`` after its data-dependent start, if any.
        epochs, steps: caps on the passes over the rows (default 100) and on optimizer steps
            (with ``args`` alone one step is one epoch; default 1000).
        tol: stop when the mean loss of the last ``tol_window`` epochs (default 1 for a
            deterministic loss, else 10) improves on the window before by less than ``tol`` times
            its size; ``converged`` and ``epochs_run`` say what happened.
        device: ``auto``, ``cpu``, ``cuda[:N]``; modules and data follow it (row data: ``auto``;
            ``args`` alone: where they are). ``dtype`` of row data: the model's by default.
        val_data, val_mask, early_stopping: held-out rows whose ELBO is recorded every epoch, and
            patience on it (training ELBO without them); the best values are restored.
        clip_norm: clip the gradient norm before each step.
        checkpoint_dir, checkpoint_every, resume: atomic checkpoints every so many seconds and at
            the end; ``resume`` continues from one (the same result as an uninterrupted run,
            the step schedule's count included).
        initialize: ``model.initialize(x, mask)`` (a data-dependent start) where the model has it.
        distributed: data parallel over an initialised ``torch.distributed`` group
            (:mod:`dlvm.inference.distributed`); rank 0 alone writes the checkpoint.
        hooks: extra :class:`~dlvm.inference.hooks.Hook` objects for the loop.
    """
    for name, value in (("epochs", epochs), ("steps", steps)):
        if value is not None and value < 1:
            raise ValueError(f"{name} must be at least 1, got {value}")
    if optimizer == "em":  # closed-form EM (dlvm.inference.em): the exact guide has nothing to learn
        return _fit_by_em(model, guide, data, mask, epochs, tol, seed, initialize, progress, config, checkpoint_dir)
    rank, world = _ranks(distributed, elbo, num_particles)
    if seed is not None:
        pyro.set_rng_seed(seed)
    kwargs = dict(kwargs or {})
    device = _place(model, guide, device if device is not None or data is None else "auto")
    dtype = _model_dtype(model, dtype)
    stepper = Stepper(optimizer, lr, clip_norm, lr_decay)
    given = None if step_decay is None else StepSchedule(step_decay)
    objective = Objective(model, guide, elbo, num_particles=num_particles, alpha=alpha)
    if data is None:
        rows = Rows(_argument_batches(_moved(args, device), _moved(kwargs, device)), None)
    else:
        rows = _prepare_rows(model, data, mask, args, kwargs, batch_size, seed, dtype, device or torch.device("cpu"),
                             initialize, world, rank, val_data, val_mask, stepper.is_lbfgs)
    stepper.follow(given if given is not None else declared_schedule(model, guide))  # after the model's start
    state = Training(objective, stepper, rows.n, plate, world=world)
    checkpoint = Path(checkpoint_dir) / CHECKPOINT_NAME if checkpoint_dir else None
    payload = _resume_payload(checkpoint, resume, rank, world, device)
    if stepper.is_lbfgs or payload is not None or world > 1:
        first = next(iter(rows.batches(0)))  # parameters must exist before the first step
        _check_deterministic(stepper, guide, first)
        objective.discover(first.args, first.kwargs, _row_scale(first, state))
    if world > 1:
        broadcast_modules(*(m for m in (model, guide) if isinstance(m, torch.nn.Module)))
    if payload is not None:
        restore_checkpoint(state, payload, model, guide, rank, device)
    state.checkpoint = checkpoint
    max_epochs = (epochs or 100) if data is not None else (steps or 1000)
    window = tol_window or (1 if stepper.is_lbfgs else 10)
    train(state, rows.batches, max_epochs, [
        *([Validation(lambda: rows.validation(state))] if rows.validation else []),
        EarlyStopping(early_stopping, model, guide), Convergence(tol, window),
        *([Progress(max_epochs)] if progress and rank == 0 else []), *hooks,
        # with several ranks every rank takes part in the decision to save, even without a path
        *([Checkpointing(checkpoint, checkpoint_every, config, model, guide, rank, device, world)]
          if checkpoint or world > 1 else []),
    ], max_steps=steps if data is not None else None)
    return FitResult(
        model=model, guide=guide, history=pd.DataFrame(state.history, columns=["epoch", "elbo", "val_elbo", "seconds"]),
        loss=state.losses, params=objective.named_parameters(), elbo=elbo_label(objective.elbo),
        seconds=state.elapsed, best_epoch=state.best_epoch, stopped_early=state.stopped_early,
        converged=state.converged, epochs_run=len(state.history), config=config or {},
    )


def _fit_by_em(model, guide, data, mask, epochs, tol, seed, initialize, progress, config,
               checkpoint_dir=None) -> FitResult:
    if seed is not None:
        pyro.set_rng_seed(seed)
    em = fit_em(model, data, mask, tol=DEFAULT_TOL if tol is None else tol, max_iter=epochs or 1000,
                initialize=initialize, progress=progress)
    history = em.history.assign(val_elbo=math.nan)[["epoch", "elbo", "val_elbo", "seconds"]]
    if checkpoint_dir:  # the fitted modules, as a gradient fit leaves them (a run folder is loaded from it)
        modules = {k: m.state_dict() for k, m in (("model", model), ("guide", guide)) if isinstance(m, torch.nn.Module)}
        save_checkpoint(Path(checkpoint_dir) / CHECKPOINT_NAME, {
            **modules, "params": {}, "epoch": em.epochs_run, "step": em.epochs_run,
            "history": history.values.tolist(), "losses": (-history["elbo"]).tolist(), "config": config or {}})
    return FitResult(model=model, guide=guide, history=history, loss=(-history["elbo"]).tolist(), params={},
                     elbo="exact (EM)", seconds=em.seconds, best_epoch=em.epochs_run, converged=em.converged,
                     epochs_run=em.epochs_run, config=config or {})


def _ranks(distributed: bool, elbo, num_particles: int) -> tuple[int, int]:
    if not distributed:
        return 0, 1
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        raise ValueError("distributed=True needs an initialised torch.distributed process group (run under torchrun)")
    if isinstance(elbo, str) and elbo.startswith("renyi") and num_particles > 1:
        raise ValueError("the renyi bound with several particles is not a sum over rows: it cannot be split over ranks")
    return rank_and_world()


def _resume_payload(checkpoint, resume, rank, world, device):
    payload = None
    if resume and rank == 0 and checkpoint is not None and checkpoint.exists():
        payload = load_checkpoint(checkpoint, map_location="cpu" if world > 1 else (device or "cpu"))
    return broadcast_object(payload) if world > 1 else payload
