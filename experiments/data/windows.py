"""Sequence data for the sequence models (VRAE, ...): arrays of shape (N, T, D).

Loading a ``.npz`` of sequences, cutting a table (a CSV of time steps x features, or an array)
into windows of T steps, and writing generated sequences back to ``.npz`` under the key ``data``.
Every problem is a one-line ValueError.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from .files import load_table

SEQUENCE_KEY = "data"


def check_sequences(array, what: str = "sequences") -> np.ndarray:
    """``array`` as float64 (N, T, D); one-line errors for a wrong rank, non-numbers or NaN/inf."""
    array = np.asarray(array)
    if array.ndim != 3:
        raise ValueError(f"{what} must be an array of shape (N, T, D), got shape {array.shape}")
    if min(array.shape) < 1:
        raise ValueError(f"{what} are empty (shape {array.shape})")
    if not np.issubdtype(array.dtype, np.number) and array.dtype != bool:
        raise ValueError(f"{what} must be numeric, got dtype {array.dtype}")
    array = array.astype(np.float64)
    if np.isnan(array).any():
        raise ValueError(f"{what} have {int(np.isnan(array).sum())} missing (NaN) values")
    if np.isinf(array).any():
        raise ValueError(f"{what} have {int(np.isinf(array).sum())} infinite values")
    return array


def load_npz_sequences(path: str | os.PathLike) -> np.ndarray:
    """The sequences in a ``.npz``: the array under key ``data``, or its only array; (N, T, D)."""
    path = Path(path)
    if path.suffix.lower() != ".npz":
        raise ValueError(f"{path}: sequences are read from a .npz file")
    # missing values are reported by check_sequences (scores take no mask)
    return check_sequences(load_table(path, missing="mask", min_rows=1).x, f"the sequences in {path.name}")


def windows(table, window: int, stride: int | None = None) -> np.ndarray:
    """Cut a (L, D) table (or a (L,) series) into windows (N, T, D) of T = ``window`` steps.

    Windows start every ``stride`` steps (default: ``window``, non-overlapping); a tail shorter
    than a window is dropped.
    """
    table = np.asarray(table, dtype=np.float64)
    if table.ndim == 1:
        table = table[:, None]
    if table.ndim != 2:
        raise ValueError(f"a table to cut into windows must be (steps, features), got shape {table.shape}")
    if int(window) != window or window < 1:
        raise ValueError(f"the window must be a positive whole number of steps, got {window}")
    stride = window if stride is None else stride
    if int(stride) != stride or stride < 1:
        raise ValueError(f"the stride must be a positive whole number of steps, got {stride}")
    if table.shape[0] < window:
        raise ValueError(f"the series has {table.shape[0]} steps, fewer than the window of {window}")
    starts = np.arange(0, table.shape[0] - window + 1, int(stride))
    return check_sequences(np.stack([table[s : s + window] for s in starts]), "windows")


def load_csv_windows(path: str | os.PathLike, window: int, stride: int | None = None) -> np.ndarray:
    """A CSV of time steps (rows) x features (numeric columns) cut into windows (N, T, D).

    Non-numeric columns (a date, say) are left out; rows are taken in file order.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"no such file: {path}")
    try:
        frame = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is not a readable CSV ({str(err).splitlines()[0][:100]})") from None
    numeric = frame.select_dtypes("number")
    if numeric.shape[1] == 0:
        raise ValueError(f"{path} has no numeric columns")
    if numeric.isna().any().any():
        raise ValueError(f"{path} has {int(numeric.isna().sum().sum())} missing values in its numeric columns")
    return windows(numeric.to_numpy(), window, stride)


def save_npz_sequences(path: str | os.PathLike, array) -> Path:
    """Write (N, T, D) sequences (e.g. ``model.sample(n)``) to ``path`` under key ``data``."""
    array = np.asarray(array.detach().cpu() if hasattr(array, "detach") else array)
    array = check_sequences(array, "generated sequences")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **{SEQUENCE_KEY: array})
    return path
