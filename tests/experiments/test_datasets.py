"""The shipped market data: shapes, dates and daily log returns checked against numpy."""
import numpy as np
import pandas as pd

from dlvm.experiments.data.sets import DATASETS, log_returns, sp500_index, sp500_stocks

TICKERS = ["AAPL", "AMD", "BAC", "BBY", "CVX", "GE", "HD", "JNJ", "JPM", "KO", "LLY", "MRK",
           "MSFT", "PEP", "PFE", "PG", "RRC", "UNH", "WMT", "XOM"]


def test_index_shape_and_dates():
    index = sp500_index()
    assert isinstance(index, pd.Series)
    assert len(index) == 8313
    assert index.index[0] == pd.Timestamp("1990-01-02")
    assert index.index[-1] == pd.Timestamp("2022-12-28")
    assert index.index.is_monotonic_increasing and index.index.is_unique
    assert np.isfinite(index.to_numpy()).all() and (index > 0).all()


def test_stocks_shape_columns_and_dates():
    prices = sp500_stocks()
    assert prices.shape == (8313, 20)
    assert sorted(prices.columns) == TICKERS
    assert prices.index[0] == pd.Timestamp("1990-01-02")
    assert prices.index[-1] == pd.Timestamp("2022-12-28")
    assert prices.index.equals(sp500_index().index)
    assert np.isfinite(prices.to_numpy()).all() and (prices.to_numpy() > 0).all()


def test_log_returns_against_numpy():
    prices = sp500_stocks()
    returns = log_returns(prices)
    values = prices.to_numpy()
    expected = np.log(values[1:] / values[:-1])
    assert returns.shape == (8312, 20)
    assert returns.index.equals(prices.index[1:])
    np.testing.assert_allclose(returns.to_numpy(), expected, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(log_returns(prices, percent=True).to_numpy(), 100 * expected, rtol=1e-9, atol=1e-10)


def test_index_log_returns_against_numpy():
    index = sp500_index()
    returns = log_returns(index)
    assert isinstance(returns, pd.Series)
    np.testing.assert_allclose(returns.to_numpy(), np.diff(np.log(index.to_numpy())), rtol=1e-9, atol=1e-12)


def test_registry_names_the_loaders():
    assert {"sp500", "sp500-stocks"} <= set(DATASETS)
