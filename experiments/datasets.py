"""The real data sets shipped with dlvm (package data, see data/PROVENANCE.md)."""
from __future__ import annotations

from importlib import resources

import numpy as np
import pandas as pd

DATA = resources.files("dlvm.experiments") / "data"

DATASETS = {
    "sp500": "S&P 500 index daily log returns in percent, 1990-01-03 to 2022-12-28 (skfolio, BSD-3)",
    "sp500-stocks": "daily log returns in percent of 20 large S&P 500 stocks, 1990-2022 (skfolio, BSD-3)",
}


def _read_prices(name: str) -> pd.DataFrame:
    with resources.as_file(DATA / "market" / name) as path:
        frame = pd.read_csv(path, parse_dates=["Date"], index_col="Date")
    return frame.sort_index()


def sp500_index() -> pd.Series:
    """S&P 500 daily close as a Series indexed by date (8,313 trading days)."""
    return _read_prices("sp500_index.csv.gz")["SP500"]


def sp500_stocks() -> pd.DataFrame:
    """Daily adjusted close of 20 S&P 500 stocks, one column per ticker, indexed by date."""
    return _read_prices("sp500_dataset.csv.gz")


def log_returns(prices: pd.Series | pd.DataFrame, percent: bool = False):
    """Daily log returns log(p_t / p_{t-1}), first row dropped (x100 with ``percent``)."""
    returns = np.log(prices).diff().iloc[1:]
    return returns * 100 if percent else returns


def _returns_table(frame: pd.DataFrame):
    from .io import Table

    return Table(x=frame.to_numpy(np.float64), mask=None, columns=[str(c) for c in frame.columns], index=frame.index)


#: named data for ``dlvm fit MODEL --data NAME``: name -> loader() -> experiments.io.Table
DATA_SOURCES = {
    "sp500": lambda: _returns_table(log_returns(sp500_index(), percent=True).to_frame()),
    "sp500-stocks": lambda: _returns_table(log_returns(sp500_stocks(), percent=True)),
}
