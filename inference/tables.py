"""CSV tables that say what they are: the separator and decimal mark, the row index, the features.

* :func:`csv_options` reads the first lines of a CSV file and returns the ``pandas.read_csv``
  options of its dialect: the separator (``,`` ``;`` tab or ``|``) and the decimal mark (a comma
  where the separator is not one).
* :func:`index_column`: a column named date/Date/time, or a leading unnamed column (what
  ``DataFrame.to_csv`` writes for the index, read back as ``Unnamed: 0``), is the row index.
* :func:`feature_columns`: every other column, each numeric, else a one-line error naming it.
"""
from __future__ import annotations

import csv
import gzip
import re
from pathlib import Path

import pandas as pd

#: CSV columns read as the row index (dates), not as features
INDEX_COLUMNS = ("date", "Date", "time")
SEPARATORS = (",", ";", "\t", "|")
#: how much of a file :func:`csv_options` reads to tell its dialect
SNIFF_BYTES = 65_536
DECIMAL_COMMA = re.compile(r"^\s*[-+]?\d+,\d+(?:[eE][-+]?\d+)?\s*$")


def _head_lines(path: Path) -> list[str]:
    """The first non-empty lines of a (possibly gzipped) text file; the last, maybe cut, left out."""
    opener = gzip.open if path.suffix.lower() == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            raw = handle.read(SNIFF_BYTES)
            more = bool(handle.read(1))
    except (OSError, EOFError) as err:
        raise ValueError(f"{path} cannot be read ({err})") from None
    lines = raw.decode("utf-8", errors="replace").lstrip("\ufeff").splitlines()
    if more and len(lines) > 1:
        lines = lines[:-1]
    return [line for line in lines if line.strip()][:50]


def _fields(lines: list[str], separator: str) -> list[list[str]]:
    return list(csv.reader(lines, delimiter=separator))


def _separator(lines: list[str]) -> str:
    """The separator that splits the header into the most fields and every line into as many."""
    best, width = ",", 1
    for separator in SEPARATORS:
        rows = _fields(lines, separator)
        if rows and len(rows[0]) > width and all(len(r) == len(rows[0]) for r in rows[1:]):
            best, width = separator, len(rows[0])
    return best


def csv_options(path) -> dict:
    """``{"sep": ..., "decimal": ...}`` for ``pandas.read_csv`` of this file's dialect.

    A file whose lines split consistently on ``;``, tab or ``|`` uses that separator; decimal
    commas (``1,5``) are read as such where the separator is not a comma. A file whose rows split
    on no separator consistently is read with commas, and its errors name what was found.
    """
    path = Path(path)
    lines = _head_lines(path)
    if not lines:
        return {"sep": ",", "decimal": "."}
    separator = _separator(lines)
    values = [field for row in _fields(lines[1:], separator) for field in row]
    comma = separator != "," and any(DECIMAL_COMMA.match(v) for v in values)
    return {"sep": separator, "decimal": "," if comma else "."}


def describe_dialect(options: dict) -> str:
    """``';'-separated with decimal commas``, for messages."""
    names = {",": "comma", ";": "';'", "\t": "tab", "|": "'|'"}
    text = f"{names[options['sep']]}-separated"
    return text + (" with decimal commas" if options.get("decimal") == "," else "")


def unnamed_index(frame: pd.DataFrame) -> str | None:
    """The leading column pandas names ``Unnamed: 0`` (a saved index), if there is one."""
    first = str(frame.columns[0]) if len(frame.columns) else ""
    return frame.columns[0] if first.startswith("Unnamed: 0") else None


def index_column(frame: pd.DataFrame) -> str | None:
    """The name of the CSV table's row index column, if it has one (a date column first)."""
    named = next((name for name in INDEX_COLUMNS if name in frame.columns), None)
    return named if named is not None else unnamed_index(frame)


def _looks_decimal_comma(series: pd.Series) -> bool:
    sample = series.dropna().astype(str).head(20)
    return len(sample) > 0 and all(DECIMAL_COMMA.match(v) for v in sample)


def feature_columns(path, frame: pd.DataFrame) -> list[str]:
    """The feature columns of a CSV table: every column but the row index and a saved pandas
    index (``Unnamed: 0``), all numeric."""
    skip = {index_column(frame), unnamed_index(frame)}
    names = [c for c in frame.columns if c not in skip]
    text = [c for c in names if not pd.api.types.is_numeric_dtype(frame[c])]
    if text:
        column = text[0]
        if _looks_decimal_comma(frame[column]):
            raise ValueError(f"{path}: column {str(column)!r} holds decimal commas in a comma-separated file; "
                             "quote-free files need ';' between fields or '.' as the decimal mark")
        raise ValueError(f"{path}: column {str(column)!r} is not numeric (only a date/time column may be)")
    if not names:
        raise ValueError(f"{path} has no numeric columns")
    complex_columns = [c for c in names if pd.api.types.is_complex_dtype(frame[c])]
    if complex_columns:
        raise ValueError(f"{path}: column {str(complex_columns[0])!r} holds complex numbers; dlvm fits real numbers")
    return names
