"""Checkpoints: one file of plain tensors and numbers, written atomically, loaded safely.

A checkpoint is a dict with ``format = "dlvm-checkpoint"`` holding the model, guide and optimizer
state dicts, the step schedule (its decay and the updates taken under it), the completed epochs,
the history and the RNG state. It is written to a temporary file in the same folder and renamed
into place, so a killed run never leaves a half-written file, and it is read with
``torch.load(weights_only=True)``: nothing in it can run code.
"""
from __future__ import annotations

import os
import pickle
import tempfile
import warnings
from pathlib import Path

import torch

FORMAT = "dlvm-checkpoint"
VERSION = 1


class CheckpointError(ValueError):
    """A file that is not a readable dlvm checkpoint, or one that does not fit the model."""


def save_checkpoint(path: str | os.PathLike, payload: dict) -> None:
    """Write ``payload`` (plus the format tag) to ``path`` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save({"format": FORMAT, "version": VERSION, **payload}, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Read a checkpoint written by :func:`save_checkpoint`; raise CheckpointError otherwise."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        with warnings.catch_warnings():  # torch warns about foreign pickle protocols; we refuse them
            warnings.simplefilter("ignore")
            payload = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:
        raise CheckpointError(
            f"{path} is not a readable dlvm checkpoint (it holds objects other than tensors and "
            "numbers; refusing to unpickle them)"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError):
        raise CheckpointError(f"{path} is not a readable dlvm checkpoint (truncated, or not a torch file)") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a dlvm checkpoint")
    return payload


def load_state(module: torch.nn.Module, state: dict, what: str) -> None:
    """``module.load_state_dict(state)`` with a one-line error when the shapes or keys differ."""
    try:
        module.load_state_dict(state)
    except (RuntimeError, KeyError, TypeError) as err:
        detail = str(err).strip().splitlines()[0][:160]
        raise CheckpointError(f"the checkpoint's {what} does not fit this {what} ({detail})") from None
