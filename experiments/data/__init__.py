"""Data: file readers (files), the data sets shipped with dlvm (sets), windows of time series (windows).

The modules depend one way: ``files`` reads a path into a :class:`Table`; ``sets`` and
``windows`` build on it; :func:`read_data` (here) resolves a data-set name or a path, the one
entry point the commands use.
"""
from __future__ import annotations

from .files import Table, load_table, match_columns, note, order_by_index
from .sets import DATASETS
from .windows import windows


def read_data(source, missing: str = "error", min_rows: int = 2, window: int | None = None,
              stride: int | None = None, columns: list[str] | None = None, ordered: bool = False) -> Table:
    """A named data set (``dlvm list``) or a file path, read as a :class:`Table`.

    ``columns`` puts the columns in that order by name (:func:`match_columns`); ``ordered``
    (time-series models) sorts the rows by their dates (:func:`order_by_index`). ``window`` cuts
    a table of time steps into sequences (N, window, D) for the sequence models, a window
    starting every ``stride`` steps (default: ``window``).
    """
    source = str(source)
    table = DATASETS[source].load() if source in DATASETS else load_table(source, missing=missing, min_rows=min_rows)
    table = match_columns(table, columns, source)
    if ordered:
        table = order_by_index(table, source)
    if window is not None:
        if table.mask is not None:
            raise ValueError("--window does not take data with missing values")
        table.x = windows(table.x, window, stride)
    return table


__all__ = ["DATASETS", "Table", "load_table", "match_columns", "note", "order_by_index", "read_data",
           "windows"]
