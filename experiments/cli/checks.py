"""Checks of the command line before any work: every numeric flag in its range, one line each.

:func:`check_arguments` runs on the parsed arguments of every command; :class:`OneLineParser`
makes argparse's own errors one line on stderr with exit status 2 as well.
"""
from __future__ import annotations

import argparse
import math
import sys

from ...models.options import flag_name

from .flags import option_checks

#: the largest seed: numpy's and Pyro's random seeds are 32-bit
MAX_SEED = 2 ** 32 - 1
#: the largest count a flag takes (a C int: sizes, epochs, draws)
MAX_COUNT = 2 ** 31 - 1
#: the most samples one command draws (-n, --iwae-samples): more would not fit in memory
MAX_DRAWS = 10_000_000


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line, ``dlvm: error: ...``, and exit status 2."""

    def error(self, message: str):
        command = self.prog.split()[1:]  # "dlvm fit" -> ["fit"]
        prefix = f"{command[0]}: " if command else ""
        print(f"dlvm: error: {prefix}{' '.join(str(message).split())}", file=sys.stderr)
        sys.exit(2)


def _count(low: int, high: int | None = None):
    high = MAX_COUNT if high is None else high
    wanted = "a positive integer" if low == 1 else f"an integer of at least {low}"

    def check(flag, value):
        if value < low:
            raise ValueError(f"{flag} must be {wanted}, got {value}")
        if value > high:
            raise ValueError(f"{flag} must be at most {high}, got {value}")
    return check


def _positive(flag, value):
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{flag} must be a finite number above 0, got {value}")


def _finite(flag, value):
    if not math.isfinite(value):
        raise ValueError(f"{flag} must be a finite number, got {value}")


def _not_negative(flag, value):
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{flag} must be a finite number of at least 0, got {value}")


def _decay(flag, value):
    if not (math.isfinite(value) and 0 < value <= 1):
        raise ValueError(f"{flag} must be in (0, 1], got {value}")


def _fraction(flag, value):
    if not 0 <= value < 1:
        raise ValueError(f"{flag} must be a fraction from 0 (no validation split) up to 1, got {value}")


def _seed(flag, value):
    if not 0 <= value <= MAX_SEED:
        raise ValueError(f"{flag} must be an integer from 0 to {MAX_SEED}, got {value}")


#: argument name -> check(flag, value); a flag absent from a command or left at None is skipped
RULES = {
    "window": _count(1), "stride": _count(1), "max_epochs": _count(1),
    "particles": _count(1),
    "batch_size": _count(1), "num_particles": _count(1), "early_stopping": _count(1),
    "iwae_samples": _count(1, MAX_DRAWS), "n": _count(1, MAX_DRAWS), "steps": _count(1), "draws": _count(2),
    "repeats": _count(1), "discriminative_steps": _count(1), "predictive_steps": _count(1),
    "lr": _positive, "clip_norm": _positive, "validation": _fraction,
    "alpha": _finite, "lr_decay": _decay, "checkpoint_every": _not_negative, "tol": _not_negative, "seed": _seed,
}
#: the model options' ranges, as each model declares them
RULES.update({name: _positive if positive else _count(low) for name, (low, positive) in option_checks().items()})


def check_arguments(args: argparse.Namespace) -> None:
    """A one-line ValueError for the first numeric flag out of its range."""
    for dest, rule in RULES.items():
        value = getattr(args, dest, None)
        if value is not None:
            rule(flag_name(dest), value)
