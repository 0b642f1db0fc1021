"""The real data sets shipped with dlvm (package data, see data/PROVENANCE.md)."""
from __future__ import annotations

from importlib import resources

import numpy as np
import pandas as pd

DATA = resources.files("dlvm.experiments") / "data"

DATASETS = {
    "sp500": "S&P 500 index daily log returns in percent, 1990-01-03 to 2022-12-28 (skfolio, BSD-3)",
    "sp500-stocks": "daily log returns in percent of 20 large S&P 500 stocks, 1990-2022 (skfolio, BSD-3)",
    "digits": "1,797 8x8 images of hand-written digits as rows of 64 grey levels in [0, 1] (scikit-learn)",
    "digits-binary": "the digits images thresholded at 0.5, for the Bernoulli likelihood",
    "ecg5000": "500 heartbeats of 140 steps as sequences (500, 140, 1), z-normalised (UCR ECG5000 TRAIN)",
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


def ecg5000() -> tuple[np.ndarray, np.ndarray]:
    """ECG5000 heartbeats: series (500, 140) float64, each row z-normalised, and labels (500,) in 1..5."""
    with resources.as_file(DATA / "ecg5000" / "ECG5000_TRAIN.txt.gz") as path:
        table = np.loadtxt(path)
    return table[:, 1:], table[:, 0].astype(int)


def digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits: images (1797, 8, 8) scaled to [0, 1] (grey level / 16) and labels (1797,)."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return bunch.images / 16.0, bunch.target


def _table(x: np.ndarray, columns=None, index=None):
    from .io import Table

    columns = [str(c) for c in columns] if columns is not None else [f"x{i}" for i in range(x.shape[-1])]
    return Table(x=np.asarray(x, np.float64), mask=None, columns=columns, index=index)


def _returns_table(frame: pd.DataFrame):
    return _table(frame.to_numpy(np.float64), frame.columns, frame.index)


#: named data for ``dlvm fit MODEL --data NAME``: name -> loader() -> experiments.io.Table
DATA_SOURCES = {
    "sp500": lambda: _returns_table(log_returns(sp500_index(), percent=True).to_frame()),
    "sp500-stocks": lambda: _returns_table(log_returns(sp500_stocks(), percent=True)),
    "digits": lambda: _table(digits()[0].reshape(-1, 64)),
    "digits-binary": lambda: _table((digits()[0].reshape(-1, 64) > 0.5).astype(np.float64)),
    "ecg5000": lambda: _table(ecg5000()[0][..., None], ["ecg"]),
}
