"""Optimizers for the engine: a step over whatever parameters the objective has found.

Parameters may appear during training (AutoGuides and lazy modules build theirs on the first
call), so a torch optimizer is created on the first step and takes new parameters as they come,
as :class:`pyro.optim.PyroOptim` does. Adam updates every scalar on its own, so one Adam over all
parameters takes the same steps as Pyro's one-Adam-per-parameter. A :class:`StepSchedule`
shrinks the updates step by step (one that a guide or model declares, or ``fit(step_decay=...)``).
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import pyro.optim
import torch
from pyro.optim.clipped_adam import ClippedAdam

from ..models.registry import Registry


def _lbfgs(params, lr, clip_norm=None):
    return torch.optim.LBFGS(params, lr=lr, max_iter=20, history_size=20, line_search_fn="strong_wolfe",
                             tolerance_grad=1e-7, tolerance_change=1e-9)


@dataclass(frozen=True)
class Optimizer:
    """A named optimizer: its learning rate when none is given, and ``make(params, lr, clip_norm)``
    (None for EM, which takes no gradient steps)."""

    name: str
    default_lr: float | None
    make: Callable | None


#: optimizers by name; "em" is closed-form EM (:mod:`dlvm.inference.em`), for models with an ``em_step``
OPTIMIZERS: Registry = Registry.of("optimizer", (
    Optimizer("adam", 1e-2, lambda params, lr, clip_norm: torch.optim.Adam(params, lr=lr)),
    Optimizer("clippedadam", 1e-2,
              lambda params, lr, clip_norm: ClippedAdam(params, lr=lr, clip_norm=clip_norm or 10.0)),
    Optimizer("lbfgs", 1.0, _lbfgs),
    Optimizer("em", None, None),
))


def default_lr(optimizer: str, lr: float | None = None) -> float | None:
    """``lr`` if given, else the named optimizer's default."""
    return OPTIMIZERS.lookup(optimizer).default_lr if lr is None else lr


@dataclass(frozen=True)
class StepSchedule:
    """Shrinking updates: the gradients of the fit's s-th update (s = 1, 2, ...) are multiplied by
    ``decay ** s`` before the optimizer (and clipping) sees them.

    A guide or model declares one as its ``step_schedule`` attribute (the engine reads it after the
    model's data-dependent start); ``fit(step_decay=...)`` sets one directly. Every fit counts its
    updates from 0; a resumed one continues the count its checkpoint saved. Under Adam this is not
    a learning-rate factor: Adam divides by the running root mean square of the gradients (over
    ~1,000 steps), so with gradient noise of constant size the s-th step is about
    lr * decay**s / sqrt(mean_{i<=s} decay**(2 i)): at ``decay`` 0.95, ~0.4 lr by s = 30, ~0.02 lr
    by s = 100, none after ~300 (the scaled gradient falls below Adam's eps)."""

    decay: float

    def __post_init__(self):
        if not 0 < self.decay <= 1:
            raise ValueError(f"the step decay must be in (0, 1], got {self.decay}")


def _check_options(spec, lr, clip_norm, lr_decay) -> None:
    if isinstance(spec, str):
        OPTIMIZERS.lookup(spec)
    if lr is not None and not (math.isfinite(lr) and lr > 0):
        raise ValueError(f"the learning rate must be a positive finite number, got {lr}")
    if clip_norm is not None and not (math.isfinite(clip_norm) and clip_norm > 0):
        raise ValueError(f"clip_norm must be a positive finite number, got {clip_norm}")
    if not 0 < lr_decay <= 1:
        raise ValueError(f"lr_decay must be in (0, 1], got {lr_decay}")
    if isinstance(spec, pyro.optim.PyroOptim) and (lr is not None or lr_decay != 1 or clip_norm is not None):
        raise ValueError("a pyro.optim optimizer carries its own settings: leave lr, lr_decay and clip_norm unset")


class Stepper:
    """One optimizer step per batch: zero the gradients, the objective's loss and gradients, the
    step schedule's factor, clipping, the update. ``spec`` is a name of :data:`OPTIMIZERS`, a
    ``pyro.optim.PyroOptim`` or a function ``params -> torch.optim.Optimizer``; ``scheduled``
    counts the updates taken under ``schedule`` (set with :meth:`follow`)."""

    def __init__(self, spec="adam", lr=None, clip_norm=None, lr_decay: float = 1.0):
        _check_options(spec, lr, clip_norm, lr_decay)
        self.spec, self.clip_norm, self.lr_decay = spec, clip_norm, lr_decay
        self.lr = default_lr(spec, lr) if isinstance(spec, str) else lr
        self.optimizer: torch.optim.Optimizer | None = None
        self.lbfgs_done = False
        self._seen: set[int] = set()
        self.schedule: StepSchedule | None = None
        self.scheduled = 0

    @property
    def is_lbfgs(self) -> bool:
        return self.spec == "lbfgs"

    def follow(self, schedule: StepSchedule | None) -> None:
        """Shrink the updates from now on by ``schedule`` (None: none); L-BFGS takes none."""
        if schedule is not None and self.is_lbfgs:
            raise ValueError("a step schedule shrinks gradient steps; L-BFGS takes none (use adam)")
        self.schedule = schedule

    @property
    def needs_parameters(self) -> bool:
        """L-BFGS needs every parameter before its first step."""
        return self.is_lbfgs

    def _make(self, params):
        if isinstance(self.spec, str):
            return OPTIMIZERS[self.spec].make(params, self.lr, self.clip_norm)
        return self.spec(params)

    def track(self, params) -> None:
        """Give the optimizer the parameters it has not seen yet (creating it on the first call)."""
        if len(params) == len(self._seen) or isinstance(self.spec, pyro.optim.PyroOptim):
            return
        new = [p for p in params if id(p) not in self._seen]
        self._seen.update(id(p) for p in new)
        if self.optimizer is None:
            self.optimizer = self._make(new)
        else:
            self.optimizer.add_param_group({"params": new})

    def step(self, state, batch, loss_and_grads, loss_only) -> float:
        """One update on ``batch``; ``loss_and_grads(state, batch)`` and ``loss_only(state, batch)``
        compute the loss (with and without gradients)."""
        params = state.objective.parameters()
        if self.is_lbfgs:
            return self._lbfgs_step(state, batch, params, loss_and_grads, loss_only)
        for p in params:
            if p.grad is not None:
                p.grad.zero_()
        loss = loss_and_grads(state, batch)
        if not math.isfinite(loss):
            return loss
        params = state.objective.parameters()
        if self.schedule is not None:
            self.scheduled += 1
            factor = self.schedule.decay ** self.scheduled
            for p in params:
                if p.grad is not None:
                    p.grad.mul_(factor)
        if isinstance(self.spec, pyro.optim.PyroOptim):
            self.spec([p for p in params if p.grad is not None])
            return loss
        self.track(params)
        if self.clip_norm is not None and self.spec != "clippedadam":
            torch.nn.utils.clip_grad_norm_(params, self.clip_norm)
        self.optimizer.step()
        return loss

    def _lbfgs_step(self, state, batch, params, loss_and_grads, loss_only) -> float:
        self.track(params)
        scale = state.n or 1

        def closure():
            # L-BFGS minimises the loss per row (its tolerances then mean the same for any N), in
            # float64 so that the line search sees changes far below 1e-7
            self.optimizer.zero_grad()
            value = loss_and_grads(state, batch) / scale
            for p in params:
                if p.grad is not None:
                    p.grad.div_(scale)
            return torch.tensor(value, dtype=torch.float64)

        iterations = self.optimizer.state[params[0]].get("n_iter", 0)
        self.optimizer.step(closure)
        # no iteration taken: the gradient was already below tolerance_grad
        self.lbfgs_done = self.optimizer.state[params[0]].get("n_iter", 0) == iterations
        return loss_only(state, batch)

    def end_epoch(self) -> None:
        if self.optimizer is not None and self.lr_decay != 1:
            for group in self.optimizer.param_groups:
                group["lr"] *= self.lr_decay

    def state_dict(self) -> dict:
        return {} if self.optimizer is None else self.optimizer.state_dict()

    def schedule_state(self) -> dict:
        """What a checkpoint keeps of the schedule: {"decay": d, "step": updates so far}, or {}."""
        return {} if self.schedule is None else {"decay": self.schedule.decay, "step": self.scheduled}

    def load_schedule_state(self, state: dict) -> None:
        """Continue the schedule of a checkpoint (its decay where this fit has none; a different
        decay declared here is an error); {} (no schedule saved) leaves this fit's as it is."""
        if not state:
            return
        if self.schedule is not None and self.schedule.decay != state["decay"]:
            raise ValueError(f"the checkpoint was trained with step decay {state['decay']}, "
                             f"this fit has {self.schedule.decay}")
        self.follow(StepSchedule(float(state["decay"])))
        self.scheduled = int(state["step"])

    def load_state_dict(self, state: dict, params) -> None:
        if not state:
            return
        if isinstance(self.spec, pyro.optim.PyroOptim):
            raise ValueError("resuming needs a named optimizer (adam, clippedadam, lbfgs)")
        self.track(params)
        self.optimizer.load_state_dict(state)
