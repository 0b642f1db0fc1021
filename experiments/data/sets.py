"""The real data sets shipped with dlvm (package data, see data/PROVENANCE.md)."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources

import numpy as np
import pandas as pd

from ...models.registry import Registry
from .files import Table

DATA = resources.files("dlvm.experiments") / "data"

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
    # imported here: sklearn.datasets loads slowly, and only the digits need it
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return bunch.images / 16.0, bunch.target


STOCK_COLUMNS = ["Open", "High", "Low", "Close", "Adj_Close", "Volume"]


def _table(x: np.ndarray, columns=None, index=None):
    columns = [str(c) for c in columns] if columns is not None else [f"x{i}" for i in range(x.shape[-1])]
    return Table(x=np.asarray(x, np.float64), mask=None, columns=columns, index=index)


def _returns_table(frame: pd.DataFrame):
    return _table(frame.to_numpy(np.float64), frame.columns, frame.index)


@dataclass(frozen=True)
class DataSet:
    """A shipped data set: ``load() -> Table`` and one line for ``dlvm list``."""

    name: str
    summary: str
    load: Callable[[], Table]


#: named data for ``dlvm fit MODEL --data NAME``
DATASETS: Registry = Registry.of("data set", (
    DataSet("sp500", "S&P 500 index daily log returns in percent, 1990-01-03 to 2022-12-28 (skfolio, BSD-3)",
            lambda: _returns_table(log_returns(sp500_index(), percent=True).to_frame())),
    DataSet("sp500-stocks", "daily log returns in percent of 20 large S&P 500 stocks, 1990-2022 (skfolio, BSD-3)",
            lambda: _returns_table(log_returns(sp500_stocks(), percent=True))),
    DataSet("digits", "1,797 8x8 images of hand-written digits as rows of 64 grey levels in [0, 1] (scikit-learn)",
            lambda: _table(digits()[0].reshape(-1, 64))),
    DataSet("digits-binary", "the digits images thresholded at 0.5, for the Bernoulli likelihood",
            lambda: _table((digits()[0].reshape(-1, 64) > 0.5).astype(np.float64))),
    DataSet("ecg5000", "500 heartbeats of 140 steps as sequences (500, 140, 1), z-normalised (UCR ECG5000 TRAIN)",
            lambda: _table(ecg5000()[0][..., None], ["ecg"])),
    DataSet("stocks", "TimeGAN's Google stock windows (3661, 24, 6): rows reversed, min-max per column (TimeGAN, Apache-2.0)",
            lambda: _table(timegan_stocks(), STOCK_COLUMNS)),
    DataSet("stockv", "TimeVAE's Verint stock windows (3919, 24, 6), raw scale (the 100% file; timeVAE, MIT)",
            lambda: _table(stockv(100), STOCK_COLUMNS)),
    DataSet("sines", "TimeGAN-style sines (10000, 24, 5): per feature frequency and phase ~ U(0, 0.1), seed 0",
            lambda: _table(timegan_sines())),
    DataSet("sensors", "synthetic sensor windows (3000, 24, 10): seasonal, trending, bursty, switching, pure-noise "
            "and correlated columns of scales 1e-2 to 1e4, seed 0",
            lambda: _table(noisy_sensors(), SENSOR_COLUMNS)),
))


# ----------------------------------------------------------------------------- TimeGAN / TimeVAE
TIMEVAE_PERCENTS = (2, 5, 10, 20, 100)


def timegan_stocks(window: int = 24) -> np.ndarray:
    """TimeGAN's "Stocks" benchmark windows, prepared exactly as TimeGAN does: (3661, 24, 6).

    The CSV (Google daily Open, High, Low, Close, Adj_Close, Volume, oldest first) is reversed
    (newest row first), each column min-max scaled over the whole series as
    (x - min) / (max - min + 1e-7), and cut into stride-1 windows; TimeGAN's loop over window
    starts stops one short of the last possible window, hence 3,685 - 24 = 3,661 windows.
    Windows are in time order (TimeGAN shuffles them; the scores do not depend on the order).
    """
    with resources.as_file(DATA / "timegan" / "stock_data.csv.gz") as path:
        table = pd.read_csv(path).to_numpy(np.float64)[::-1]
    table = (table - table.min(0)) / (table.max(0) - table.min(0) + 1e-7)
    return np.stack([table[s : s + window] for s in range(len(table) - window)])


def stockv(percent: int = 100) -> np.ndarray:
    """TimeVAE's Verint stock training windows, the most recent ``percent`` % (2, 5, 10, 20, 100): (N, 24, 6), raw scale."""
    if percent not in TIMEVAE_PERCENTS:
        raise ValueError(f"stockv comes in {', '.join(map(str, TIMEVAE_PERCENTS))} percent, not {percent}")
    with resources.as_file(DATA / "timevae" / f"stockv_subsampled_train_perc_{percent}.npz") as path:
        with np.load(path) as archive:
            return archive["data"]


def timevae_sines(percent: int = 100) -> np.ndarray:
    """TimeVAE's sine training sets: ``percent`` in 2, 5, 10, 20 are the shipped files (N, 24, 5);
    100 is regenerated by :func:`timevae_sine_windows` (the same windows in generation order)."""
    if percent == 100:
        return timevae_sine_windows()
    if percent not in TIMEVAE_PERCENTS:
        raise ValueError(f"the TimeVAE sines come in {', '.join(map(str, TIMEVAE_PERCENTS))} percent, not {percent}")
    with resources.as_file(DATA / "timevae" / f"sine_subsampled_train_perc_{percent}.npz") as path:
        with np.load(path) as archive:
            return archive["data"]


def timevae_sine_windows(n: int = 10_000, window: int = 24, features: int = 5, seed: int = 42) -> np.ndarray:
    """The TimeVAE authors' sines (N, T, D) from their recipe, numpy's legacy generator seeded ``seed``.

    One frequency f ~ U(0.1, 0.15) for the whole set, then phases phi ~ U(0, 2 pi) and amplitudes
    A ~ U(1, 3), each drawn as an (N, D) array in that order; x_td = (A sin(2 pi f t + phi) + 1) / 2
    for t = 0..T-1.
    """
    rng = np.random.RandomState(seed)
    freq = rng.uniform(0.1, 0.15)
    phase = rng.uniform(0, 2 * np.pi, size=(n, features))
    amplitude = rng.uniform(1, 3, size=(n, features))
    t = np.arange(window)[None, :, None]
    return (amplitude[:, None, :] * np.sin(2 * np.pi * freq * t + phase[:, None, :]) + 1) / 2


def timegan_sines(n: int = 10_000, window: int = 24, features: int = 5, seed: int = 0) -> np.ndarray:
    """Sines as in TimeGAN (Yoon et al. 2019): (N, T, D) in [0, 1].

    For each window and feature (in that order) a frequency and then a phase are drawn from
    U(0, 0.1) (numpy's legacy generator seeded ``seed``); x_td = (sin(f t + phi) + 1) / 2, t = 0..T-1.
    """
    draws = np.random.RandomState(seed).uniform(0, 0.1, size=(n, features, 2))
    t = np.arange(window)[None, :, None]
    return (np.sin(draws[:, None, :, 0] * t + draws[:, None, :, 1]) + 1) / 2


#: the columns of :func:`noisy_sensors`
SENSOR_COLUMNS = ("temperature", "power", "counter", "backlog", "bursts", "uniform_noise", "gauss_noise",
                  "weekly", "occupancy", "pressure")


def noisy_sensors(n: int = 3000, window: int = 24, seed: int = 0) -> np.ndarray:
    """A hard multivariate test set of sensor-like hourly series, cut into stride-1 windows: (n, T, 10).

    One series of n + T - 1 hourly steps t (numpy's ``default_rng(seed)``), columns of very
    different scales (1e-2 to 1e4), some correlated, two pure noise:

    - temperature: 20 + 5 sin(2 pi t / 24) + AR(1) noise (coefficient 0.9, innovation sd 0.5);
    - power: 3 temperature + 40 + N(0, 2^2), correlated with temperature;
    - counter: 1e4 + 2 t + a random walk of N(0, 30^2) steps (trending, large scale);
    - backlog: 5e3 - 0.5 counter + N(0, 10^2) (anti-correlated with counter);
    - bursts: a sum of bursts starting with probability 0.03 per step, height Exp(1), decaying
      by 0.7 a step, plus N(0, 0.01^2) (sparse and heavy-tailed);
    - uniform_noise: U(0, 1) and gauss_noise: N(0, 0.02^2), independent of everything;
    - weekly: 100 + 30 sin(2 pi t / 168) + 10 sin(2 pi t / 24) + N(0, 3^2);
    - occupancy: a two-state Markov switch (stay probability 0.97) between 0.1 and 0.8, + N(0, 0.05^2);
    - pressure: a slow AR(1) (coefficient 0.99, innovation sd 0.3) around 1013.
    """
    rng = np.random.default_rng(seed)
    length = n + window - 1
    t = np.arange(length, dtype=np.float64)

    def ar1(coefficient, sd):
        out = np.zeros(length)
        noise = rng.normal(0, sd, length)
        for i in range(1, length):
            out[i] = coefficient * out[i - 1] + noise[i]
        return out

    temperature = 20 + 5 * np.sin(2 * np.pi * t / 24) + ar1(0.9, 0.5)
    power = 3 * temperature + 40 + rng.normal(0, 2, length)
    counter = 1e4 + 2 * t + np.cumsum(rng.normal(0, 30, length))
    backlog = 5e3 - 0.5 * counter + rng.normal(0, 10, length)
    starts = rng.random(length) < 0.03
    kicks = np.where(starts, rng.exponential(1.0, length), 0.0)
    bursts = np.zeros(length)
    for i in range(length):
        bursts[i] = (0.7 * bursts[i - 1] if i else 0.0) + kicks[i]
    bursts += rng.normal(0, 0.01, length)
    uniform = rng.random(length)
    gauss = rng.normal(0, 0.02, length)
    weekly = 100 + 30 * np.sin(2 * np.pi * t / 168) + 10 * np.sin(2 * np.pi * t / 24) + rng.normal(0, 3, length)
    state = np.zeros(length, dtype=int)
    switch = rng.random(length) > 0.97
    for i in range(1, length):
        state[i] = 1 - state[i - 1] if switch[i] else state[i - 1]
    occupancy = np.where(state == 1, 0.8, 0.1) + rng.normal(0, 0.05, length)
    pressure = 1013 + ar1(0.99, 0.3)
    table = np.stack([temperature, power, counter, backlog, bursts, uniform, gauss, weekly, occupancy, pressure], -1)
    return np.stack([table[s : s + window] for s in range(n)])
