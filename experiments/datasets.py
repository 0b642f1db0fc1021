"""The real data sets shipped with dlvm (package data, see data/PROVENANCE.md)."""
from __future__ import annotations

from importlib import resources

import numpy as np
import pandas as pd

DATA = resources.files("dlvm.experiments") / "data"

DATASETS = {
    "sp500": "S&P 500 index, daily close, 1990-01-02 to 2022-12-28 (skfolio, BSD-3)",
    "sp500-stocks": "daily adjusted prices of 20 large S&P 500 stocks, 1990-2022 (skfolio, BSD-3)",
    "ecg5000": "500 labelled heartbeats of 140 steps, z-normalised (UCR archive, ECG5000 TRAIN split)",
    "digits": "1,797 8x8 grey-level images of hand-written digits, values 0-16 (scikit-learn)",
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
