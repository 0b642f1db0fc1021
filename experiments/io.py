"""Reading user data files (CSV, .npy, .npz) into arrays, with one-line errors for bad input."""
from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from dlvm.inference.streaming import feature_columns, index_column


@dataclass
class Table:
    """Observations read from a file: ``x`` (N, ...) float64 with NaN for missing entries,
    ``mask`` (True = observed) or None, the feature names and the row index (dates) if any."""

    x: np.ndarray
    mask: np.ndarray | None
    columns: list[str]
    index: pd.Index | None = None


def _read_csv(path: Path) -> tuple[np.ndarray, list[str], pd.Index | None]:
    try:
        frame = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        raise ValueError(f"{path} is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is not a readable CSV file ({str(err).splitlines()[0][:100]})") from None
    if frame.empty:
        raise ValueError(f"{path} has a header but no data rows")
    columns = feature_columns(path, frame)
    name = index_column(frame)
    index = None if name is None else pd.Index(frame[name], name=name)
    return frame[columns].to_numpy(dtype=np.float64), [str(c) for c in columns], index


def _read_array(path: Path) -> np.ndarray:
    try:
        loaded = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as err:
        raise ValueError(f"{path} is not a readable numpy file ({str(err).splitlines()[0][:100]})") from None
    if isinstance(loaded, np.lib.npyio.NpzFile):
        with loaded:
            keys = list(loaded.keys())
            if "data" in keys:
                key = "data"
            elif len(keys) == 1:
                key = keys[0]
            else:
                raise ValueError(f"{path} holds arrays {keys}; name the data array 'data'")
            loaded = loaded[key]
    if not np.issubdtype(loaded.dtype, np.number) and loaded.dtype != np.bool_:
        raise ValueError(f"{path} holds a {loaded.dtype} array, not numbers")
    return loaded.astype(np.float64)


def load_table(path: str | Path, missing: str = "error", min_rows: int = 2) -> Table:
    """Read ``path`` (.csv, .csv.gz, .npy or .npz) as observations.

    CSV: numeric columns are features; a column named date/Date/time is the row index; any other
    non-numeric column is an error naming it. NaN entries are an error unless
    ``missing="mask"``, which returns a mask of the observed entries. Infinite values and fewer
    than ``min_rows`` rows are errors.
    """
    if missing not in ("error", "mask"):
        raise ValueError(f"missing must be 'error' or 'mask', not {missing!r}")
    path = Path(path)
    if not path.exists():
        raise ValueError(f"data file {path} does not exist")
    if path.is_dir():
        raise ValueError(f"{path} is a directory, not a data file")
    if path.stat().st_size == 0:
        raise ValueError(f"{path} is empty")
    suffixes = "".join(path.suffixes[-2:]).lower()
    index = None
    if path.suffix.lower() in (".npy", ".npz"):
        x = _read_array(path)
        columns = [f"x{i}" for i in range(x.shape[-1])] if x.ndim else []
    elif suffixes.endswith((".csv", ".csv.gz", ".txt")):
        x, columns, index = _read_csv(path)
    else:
        raise ValueError(f"{path}: unsupported file type (use .csv, .csv.gz, .npy or .npz)")
    if x.ndim < 2:
        raise ValueError(f"{path}: expected rows of observations (2 or more dimensions), got shape {x.shape}")
    if x.shape[0] < min_rows:
        raise ValueError(f"{path} has {x.shape[0]} row(s); at least {min_rows} are needed")
    if np.isinf(x).any():
        raise ValueError(f"{path} has {int(np.isinf(x).sum())} infinite value(s)")
    nan = np.isnan(x)
    mask = None
    if nan.any():
        if missing == "error":
            raise ValueError(
                f"{path} has {int(nan.sum())} missing (NaN) value(s); pass --missing mask to treat them as missing"
            )
        mask = ~nan
    return Table(x=x, mask=mask, columns=columns, index=index)


def read_data(source, missing: str = "error", min_rows: int = 2, window: int | None = None,
              stride: int | None = None) -> Table:
    """A named data set (``dlvm list``) or a file path, read as a :class:`Table`.

    ``window`` cuts a table of time steps into sequences (N, window, D) for the sequence models,
    a window starting every ``stride`` steps (default: ``window``).
    """
    from .datasets import DATA_SOURCES
    from .sequences import windows

    source = str(source)
    table = DATA_SOURCES[source]() if source in DATA_SOURCES else load_table(source, missing=missing, min_rows=min_rows)
    if window is not None:
        if table.mask is not None:
            raise ValueError("--window does not take data with missing values")
        table.x = windows(table.x, window, stride)
    return table
