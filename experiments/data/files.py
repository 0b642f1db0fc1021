"""Reading user data files (CSV, .npy, .npz) into arrays, with one-line errors for bad input.

A file says what it is or is refused: the CSV dialect is detected (``;``/tab/``|`` separators,
decimal commas), a saved pandas index (``Unnamed: 0``) or a date column is the row index, never a
feature; complex numbers, integers that float64 cannot hold exactly, columns without a single
value and infinite values are errors naming the column.
"""
from __future__ import annotations

import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ...inference.tables import csv_options, describe_dialect, feature_columns, index_column

#: integers beyond this magnitude are not all representable in float64 (its 53-bit significand)
FLOAT64_EXACT_INTEGERS = 2 ** 53
NPY_MAGIC, ZIP_MAGIC = b"\x93NUMPY", b"PK\x03\x04"


@dataclass
class Table:
    """Observations read from a file: ``x`` (N, ...) float64 with NaN for missing entries,
    ``mask`` (True = observed) or None, the feature names and the row index (dates) if any.

    ``named``: the columns carry names from a header (not positions ``x0, x1, ...``);
    ``dtypes``: the stored type of each column; ``largest_integer``: the largest magnitude of an
    integer column (0 without one), which a float type must hold exactly.
    """

    x: np.ndarray
    mask: np.ndarray | None
    columns: list[str]
    index: pd.Index | None = None
    named: bool = False
    dtypes: list[str] = field(default_factory=list)
    largest_integer: int = 0


def note(message: str) -> None:
    """A one-line note on stderr (``dlvm: note: ...``) about something done to the input."""
    print(f"dlvm: note: {message}", file=sys.stderr)


def _parse_csv(path: Path, options: dict) -> pd.DataFrame:
    try:
        return pd.read_csv(path, **options)
    except pd.errors.EmptyDataError:
        raise ValueError(f"{path} is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as err:
        raise ValueError(f"{path} is not a readable {describe_dialect(options)} CSV file "
                         f"({str(err).strip().splitlines()[0][:100]})") from None


def _largest_integer(frame: pd.DataFrame, path) -> int:
    """The largest magnitude among the integer columns of ``frame``; an error beyond float64."""
    largest = 0
    for name in frame.columns:
        if pd.api.types.is_integer_dtype(frame[name]) and len(frame[name]):
            top = max(abs(int(frame[name].max())), abs(int(frame[name].min())))
            if top > FLOAT64_EXACT_INTEGERS:
                raise ValueError(f"{path}: column {str(name)!r} holds the integer {top}, beyond 2^53: "
                                 "float64 cannot hold it exactly (scale it or store it as a float)")
            largest = max(largest, top)
    return largest


def _check_split(path: Path, frame: pd.DataFrame, options: dict) -> None:
    """A one-line error for a header that holds another separator than the rows were split on."""
    if len(frame.columns) != 1:
        return
    header = str(frame.columns[0])
    other = next((sep for sep in (";", "\t", "|") if sep != options["sep"] and sep in header), None)
    if other is not None:
        raise ValueError(f"{path}: the header splits on {other!r} but the rows do not split evenly on it; "
                         f"write every row with the same {other!r}-separated fields")


def _read_csv(path: Path) -> Table:
    options = csv_options(path)
    frame = _parse_csv(path, options)
    _check_split(path, frame, options)
    if frame.empty:
        raise ValueError(f"{path} has a header but no data rows")
    columns = feature_columns(path, frame)
    name = index_column(frame)
    index = None if name is None else pd.Index(frame[name], name=str(name))
    features = frame[columns]
    return Table(x=features.to_numpy(dtype=np.float64), mask=None, columns=[str(c) for c in columns],
                 index=index, named=True, dtypes=[str(t) for t in features.dtypes],
                 largest_integer=_largest_integer(features, path))


def _unreadable_array(path: Path, err: Exception) -> ValueError:
    """The error for a file numpy cannot load: what it is, never a hint to unpickle it."""
    with open(path, "rb") as handle:
        head = handle.read(len(NPY_MAGIC))
    if not (head.startswith(NPY_MAGIC) or head.startswith(ZIP_MAGIC)):
        return ValueError(f"{path} is not a numpy file (no .npy or .npz header); write it with numpy.save or numpy.savez")
    if "object arrays" in str(err).lower():
        return ValueError(f"{path} holds Python objects, not numbers; dlvm never loads those")
    return ValueError(f"{path} is not a readable numpy file ({str(err).splitlines()[0][:100]})")


def _load_array(path: Path) -> np.ndarray:
    try:
        loaded = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as err:
        raise _unreadable_array(path, err) from None
    if isinstance(loaded, np.lib.npyio.NpzFile):
        with loaded:
            keys = list(loaded.keys())
            if "data" in keys:
                key = "data"
            elif len(keys) == 1:
                key = keys[0]
            else:
                raise ValueError(f"{path} holds arrays {keys}; name the data array 'data'")
            try:
                loaded = loaded[key]
            except ValueError as err:
                raise _unreadable_array(path, err) from None
    return loaded


def _read_array(path: Path) -> Table:
    loaded = _load_array(path)
    if np.iscomplexobj(loaded):
        raise ValueError(f"{path} holds complex numbers ({loaded.dtype}); dlvm fits real numbers")
    if not np.issubdtype(loaded.dtype, np.number) and loaded.dtype != np.bool_:
        raise ValueError(f"{path} holds a {loaded.dtype} array, not numbers")
    largest = 0
    if np.issubdtype(loaded.dtype, np.integer) and loaded.size:
        largest = max(abs(int(loaded.max())), abs(int(loaded.min())))
        if largest > FLOAT64_EXACT_INTEGERS:
            raise ValueError(f"{path} holds the integer {largest}, beyond 2^53: float64 cannot hold it exactly "
                             "(scale it or store it as a float)")
    x = loaded.astype(np.float64)
    columns = [f"x{i}" for i in range(x.shape[-1])] if x.ndim else []
    return Table(x=x, mask=None, columns=columns, dtypes=[str(loaded.dtype)] * len(columns), largest_integer=largest)


def _empty_columns(table: Table) -> list[str]:
    """The columns (last axis) without a single observed value."""
    if not table.x.size or table.x.ndim < 2:
        return []
    observed = ~np.isnan(table.x).reshape(-1, table.x.shape[-1]).all(0)
    return [name for name, seen in zip(table.columns, observed) if not seen]


def _check_values(path: Path, table: Table, missing: str, min_rows: int) -> None:
    x = table.x
    if x.ndim < 2:
        raise ValueError(f"{path}: expected rows of observations (2 or more dimensions), got shape {x.shape}")
    if x.shape[0] < min_rows:
        raise ValueError(f"{path} has {x.shape[0]} row(s); at least {min_rows} are needed")
    if min(x.shape) < 1:
        raise ValueError(f"{path} holds no values (shape {x.shape})")
    if np.isinf(x).any():
        raise ValueError(f"{path} has {int(np.isinf(x).sum())} infinite value(s)")
    empty = _empty_columns(table)
    if empty:
        raise ValueError(f"{path}: column {empty[0]!r} has no values (all missing); remove it")
    nan = np.isnan(x)
    if nan.any():
        if missing == "error":
            raise ValueError(
                f"{path} has {int(nan.sum())} missing (NaN) value(s); pass --missing mask to treat them as missing"
            )
        table.mask = ~nan


def load_table(path: str | Path, missing: str = "error", min_rows: int = 2) -> Table:
    """Read ``path`` (.csv, .csv.gz, .txt, .npy or .npz) as observations.

    CSV: the dialect is detected (:func:`~dlvm.inference.tables.csv_options`); numeric columns are
    features; a column named date/Date/time or a leading ``Unnamed: 0`` is the row index; any
    other non-numeric column is an error naming it. NaN entries are an error unless
    ``missing="mask"``, which returns a mask of the observed entries; a column with no value at
    all is an error either way. Infinite values, complex numbers, integers beyond 2^53 and fewer
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
    if path.suffix.lower() in (".npy", ".npz"):
        table = _read_array(path)
    elif suffixes.endswith((".csv", ".csv.gz", ".txt")):
        table = _read_csv(path)
    else:
        raise ValueError(f"{path}: unsupported file type (use .csv, .csv.gz, .npy or .npz)")
    _check_values(path, table, missing, min_rows)
    return table


def _index_keys(index: pd.Index) -> pd.Index:
    """The index as numbers or dates where it reads as such, else as text."""
    if pd.api.types.is_numeric_dtype(index):
        return index
    parsed = pd.to_datetime(index, errors="coerce", format="mixed")
    return index.astype(str) if parsed.isna().any() else parsed


def order_by_index(table: Table, source) -> Table:
    """A time series in the order of its row index (dates): sorted with a note when the file is
    not in order; an error when a date repeats."""
    if table.index is None or len(table.index) < 2:
        return table
    if table.index.isna().any():
        row = int(np.flatnonzero(table.index.isna())[0]) + 1
        raise ValueError(f"{source}: {table.index.name!r} is empty in data row {row}; a time series needs "
                         "a date on every row")
    keys = _index_keys(table.index)
    repeated = keys[keys.duplicated()]
    if len(repeated):
        raise ValueError(f"{source}: {table.index.name!r} repeats {table.index[keys.duplicated()][0]!r}; "
                         "a time series needs one row per date")
    if keys.is_monotonic_increasing:
        return table
    order = np.argsort(np.asarray(keys), kind="stable")
    note(f"{source}: rows sorted by {table.index.name!r} (the file is not in that order)")
    table.x = table.x[order]
    table.mask = None if table.mask is None else table.mask[order]
    table.index = table.index[order]
    return table


def match_columns(table: Table, expected: list[str] | None, source) -> Table:
    """``table`` with its columns in the order of ``expected`` (the names a model was fitted on).

    The same names in another order are put in order by name; other names are an error naming
    the difference. Columns without names (arrays) are only checked by count elsewhere.
    """
    if not expected or not table.named or list(table.columns) == list(expected):
        return table
    have, want = set(table.columns), set(expected)
    if have != want or len(table.columns) != len(expected):
        missing = [c for c in expected if c not in have]
        extra = [c for c in table.columns if c not in want]
        detail = f"lacks {missing[0]!r}" if missing else f"has {extra[0]!r}, which the run was not fitted on"
        raise ValueError(f"{source} {detail} (the run was fitted on columns {', '.join(expected)})")
    order = [table.columns.index(c) for c in expected]
    table.x = table.x[..., order]
    table.mask = None if table.mask is None else table.mask[..., order]
    table.columns = list(expected)
    table.dtypes = [table.dtypes[i] for i in order] if table.dtypes else table.dtypes
    return table
