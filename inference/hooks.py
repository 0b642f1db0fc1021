"""Hooks of the training loop (:func:`dlvm.inference.engine.train`).

A hook reads and changes the :class:`~dlvm.inference.engine.Training` state at fixed points:
``start``, ``after_step``, ``after_epoch`` (may set ``state.stop``), ``save`` (after every
``after_epoch``, when ``state.stop`` is final) and ``finish``. Validation, early stopping,
convergence, progress, checkpoints and evaluation every k steps are hooks; so can a user's be.
"""
from __future__ import annotations

import copy
import math
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from .checkpoint import load_state, save_checkpoint
from .distributed import broadcast_object, gather_objects


class Hook:
    """Does nothing at every point; subclasses override what they need."""

    def start(self, state) -> None: ...

    def after_step(self, state) -> None: ...

    def after_epoch(self, state) -> None: ...

    def save(self, state) -> None: ...

    def finish(self, state) -> None: ...


class AtFinish(Hook):
    """Calls ``fn()`` when training ends, after the best values are restored and before the last
    checkpoint is written (e.g. a model's post-training fit that must travel in its state)."""

    def __init__(self, fn):
        self.fn = fn

    def finish(self, state) -> None:
        self.fn()


class TimeLimit(Hook):
    """Stop at the end of the first epoch after ``seconds`` of training (a compute budget)."""

    def __init__(self, seconds: float):
        if not seconds > 0:
            raise ValueError(f"the time limit must be positive, got {seconds}")
        self.seconds = seconds

    def after_epoch(self, state) -> None:
        if state.elapsed >= self.seconds:
            state.stop = True


class Validation(Hook):
    """``val_elbo``: minus the summed loss of the held-out rows per row, after every epoch.
    ``total_loss()`` returns (summed loss, rows)."""

    def __init__(self, total_loss):
        self.total_loss = total_loss

    def after_epoch(self, state) -> None:
        with torch.no_grad():
            loss, rows = self.total_loss()
        state.record["val_elbo"] = -loss / rows


def _modules(model, guide) -> dict:
    return {k: m for k, m in (("model", model), ("guide", guide)) if isinstance(m, torch.nn.Module)}


def snapshot(objective, model, guide) -> dict:
    """A copy of every trained value: module state dicts and param-store parameters."""
    return {**{k: copy.deepcopy(m.state_dict()) for k, m in _modules(model, guide).items()},
            "params": {n: p.detach().clone() for n, p in objective.store_parameters().items()}}


def load_snapshot(values: dict, objective, model, guide) -> None:
    for key, module in _modules(model, guide).items():
        if key in values:
            load_state(module, values[key], key)
    current = objective.store_parameters()
    with torch.no_grad():
        for name, value in values.get("params", {}).items():
            if name in current:
                current[name].copy_(value)


class EarlyStopping(Hook):
    """Track the best epoch by ``val_elbo`` (``elbo`` without validation data); with a
    ``patience``, stop after that many epochs without improvement and restore the best values."""

    def __init__(self, patience: int | None, model, guide):
        if patience is not None and patience < 1:
            raise ValueError(f"early stopping patience must be at least 1, got {patience}")
        self.patience, self.model, self.guide = patience, model, guide
        self.best = {"value": -math.inf, "epoch": 0, "values": None}

    def start(self, state) -> None:
        if state.best:  # resumed
            self.best = state.best

    def after_epoch(self, state) -> None:
        value = state.record["val_elbo"]
        value = state.record["elbo"] if math.isnan(value) else value
        if value > self.best["value"]:
            keep = snapshot(state.objective, self.model, self.guide) if self.patience else None
            self.best = {"value": value, "epoch": state.epoch, "values": keep}
        state.best, state.best_epoch = self.best, self.best["epoch"]
        if self.patience and state.epoch - self.best["epoch"] >= self.patience:
            state.stop = state.stopped_early = True

    def finish(self, state) -> None:
        if self.patience and self.best["values"] is not None:
            load_snapshot(self.best["values"], state.objective, self.model, self.guide)


class Convergence(Hook):
    """Stop when the mean loss of the last ``window`` epochs improves on the ``window`` before by
    less than ``tol`` times its size (at least 1): the smoothed relative change of scikit-learn's
    ``tol``. L-BFGS also stops when its own tolerances are met."""

    def __init__(self, tol: float | None, window: int):
        if tol is not None and not (math.isfinite(tol) and tol >= 0):
            raise ValueError(f"tol must be a non-negative number, got {tol}")
        if window < 1:
            raise ValueError(f"the convergence window must be at least 1, got {window}")
        self.tol, self.window = tol, window

    def after_epoch(self, state) -> None:
        if self.tol is None and not state.stepper.is_lbfgs:
            return
        losses = [-r["elbo"] for r in state.history[-2 * self.window:]]
        if state.stepper.is_lbfgs and (state.stepper.lbfgs_done or (
                len(losses) > 1 and abs(losses[-2] - losses[-1]) < 1e-10 * (1 + abs(losses[-1])))):
            state.converged = state.stop = True
        if self.tol is None or len(losses) < 2 * self.window:
            return
        before = sum(losses[-2 * self.window:-self.window]) / self.window
        now = sum(losses[-self.window:]) / self.window
        if before - now < self.tol * max(abs(now), 1.0):
            state.converged = state.stop = True


class Progress(Hook):
    """A tqdm bar over the epochs with the latest ELBO."""

    def __init__(self, total: int):
        self.total = total
        self.bar = None

    def start(self, state) -> None:
        self.bar = tqdm(total=self.total, initial=state.epoch, desc="fit", leave=False)

    def after_epoch(self, state) -> None:
        self.bar.update(1)
        self.bar.set_postfix(elbo=f"{state.record['elbo']:.4g}", val=f"{state.record['val_elbo']:.4g}")

    def finish(self, state) -> None:
        self.bar.close()


class EvaluateEvery(Hook):
    """Call ``evaluate(state)`` at the start and every ``every`` steps (and after the last),
    appending its dict, with ``step`` and training ``seconds``, to ``records``."""

    def __init__(self, every: int, evaluate):
        if every < 1:
            raise ValueError(f"eval_every must be positive, got {every}")
        self.every, self.evaluate, self.records = every, evaluate, []
        self._began, self._paused = 0.0, 0.0

    def _record(self, state) -> None:
        paused = time.perf_counter()
        seconds = paused - self._began - self._paused
        self.records.append({"step": state.step, "seconds": seconds, **self.evaluate(state)})
        self._paused += time.perf_counter() - paused

    def start(self, state) -> None:
        self._began = time.perf_counter()
        self._record(state)

    def after_step(self, state) -> None:
        if state.step % self.every == 0:
            self._record(state)

    def finish(self, state) -> None:
        if self.records[-1]["step"] != state.step:
            self._record(state)


def _rng_state(device: torch.device) -> list[torch.Tensor]:
    """The random states a fit draws from: the CPU's, and the GPU's when it runs on one."""
    return [torch.get_rng_state(), *([torch.cuda.get_rng_state(device)] if device.type == "cuda" else [])]


def _set_rng_state(states, device: torch.device) -> None:
    torch.set_rng_state(states[0].cpu())
    if device.type == "cuda" and len(states) > 1:
        torch.cuda.set_rng_state(states[1].cpu(), device)


class Checkpointing(Hook):
    """Write ``path`` atomically at the end of an epoch once ``every`` seconds have passed since
    the last write, and after the last epoch (rank 0 only; every rank sends its random state)."""

    def __init__(self, path: Path | None, every: float, config: dict | None, model, guide, rank: int, device, world: int):
        self.path, self.every, self.config = path, every, config or {}
        self.model, self.guide, self.rank, self.device, self.world = model, guide, rank, device, world
        self.last = time.perf_counter()

    def save(self, state) -> None:
        due = state.stop or time.perf_counter() - self.last >= self.every
        if self.world > 1:  # rank 0's clock decides
            due = broadcast_object(due)
        if not due:
            return
        ranks = gather_objects(_rng_state(self.device)) if self.world > 1 else None
        if self.rank == 0 and self.path is not None:
            save_checkpoint(self.path, {
                **snapshot(state.objective, self.model, self.guide),
                "optimizer": state.stepper.state_dict(), "schedule": state.stepper.schedule_state(),
                "epoch": state.epoch, "step": state.step,
                "history": state.history, "losses": state.losses, "rng": torch.get_rng_state(),
                "best": state.best, "config": self.config,
                **({"cuda_rng": torch.cuda.get_rng_state(self.device)} if self.device.type == "cuda" else {}),
                **({"rng_ranks": ranks} if ranks is not None else {}),
            })
        self.last = time.perf_counter()


def restore_checkpoint(state, payload: dict, model, guide, rank: int, device) -> None:
    """Continue from a checkpoint: trained values, optimizer and step schedule, random state, history."""
    load_snapshot(payload, state.objective, model, guide)
    state.stepper.load_state_dict(payload.get("optimizer") or {}, state.objective.parameters())
    state.stepper.load_schedule_state(payload.get("schedule") or {})
    ranks = payload.get("rng_ranks") or []
    if len(ranks) == state.world:
        _set_rng_state(ranks[rank], device)
    elif rank == 0:
        _set_rng_state([payload["rng"], *([payload["cuda_rng"]] if "cuda_rng" in payload else [])], device)
    state.best = payload.get("best") or {}
    state.best_epoch = int(state.best.get("epoch", 0))
    state.history = list(payload["history"])
    state.losses = list(payload.get("losses", []))
    state.epoch = int(payload["epoch"])
    state.step = int(payload.get("step", 0))
    state.elapsed = float(state.history[-1]["seconds"]) if state.history else 0.0
