"""Factor models as covariance estimators for 20 stocks' daily returns (§6.1).

A Gaussian x_t ~ N(mu, Sigma) for the D = 20 daily log returns needs D(D+1)/2 = 210 covariance
parameters; a factor model Sigma = Lambda Lambda^T + Psi with M factors needs D M + D. Each
calendar year is a training period and the next year the test period (rolling, so every estimate
is judged only on days after the ones it saw). Per window we fit FA with M = 1..8 factors by exact
maximum likelihood (dlvm, L-BFGS) and the two references, the Gaussian with the sample covariance
(the maximum-likelihood estimate) and scikit-learn's Ledoit-Wolf shrinkage, and score each by its
log-likelihood per test day. Returns are in percent (a change of units shifts every score by the
same constant, D log 100).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import multivariate_normal
from sklearn.covariance import LedoitWolf

from ..data.sets import log_returns, sp500_stocks
from .fa_vs_pca import fit_exact, held_out_log_likelihood
from ..reporting.plots import color, figure, save_figure

FACTORS = range(1, 9)


def covariance_parameters(features: int, factors: int | None = None) -> int:
    """Free covariance parameters: D(D+1)/2 for a full covariance, D M + D for M factors."""
    if factors is None:
        return features * (features + 1) // 2
    return features * factors + features


def gaussian_log_likelihood(x: np.ndarray, mean: np.ndarray, cov: np.ndarray) -> float:
    """Mean log N(x_t; mean, cov) per row of x (T, D)."""
    return float(multivariate_normal(mean, cov).logpdf(x).mean())


def _standard_error(values) -> float:
    return float(np.std(values, ddof=1) / np.sqrt(len(values)))


def windows(returns: pd.DataFrame, years) -> list[tuple[int, pd.DataFrame, pd.DataFrame]]:
    """(test year, training rows of the year before, test rows) for each test year."""
    by_year = returns.index.year
    return [(year, returns[by_year == year - 1], returns[by_year == year]) for year in years]


def evaluate_window(train: np.ndarray, test: np.ndarray, factors=FACTORS, seed: int = 0) -> list[dict]:
    """Test log-likelihood per day of the sample covariance, Ledoit-Wolf and FA with each M."""
    mean = train.mean(0)
    sample = np.cov(train, rowvar=False, bias=True)
    shrunk = LedoitWolf().fit(train)
    d = train.shape[1]
    rows = [
        {"method": "sample covariance", "factors": np.nan, "parameters": covariance_parameters(d),
         "loglik": gaussian_log_likelihood(test, mean, sample)},
        {"method": "Ledoit-Wolf", "factors": np.nan, "parameters": covariance_parameters(d),
         "loglik": gaussian_log_likelihood(test, shrunk.location_, shrunk.covariance_)},
    ]
    for m in factors:
        model = fit_exact(train, m, "diagonal", seed)
        rows.append({"method": "FA", "factors": m, "parameters": covariance_parameters(d, m),
                     "loglik": held_out_log_likelihood(model, test)})
    return rows


def _plot(summary: pd.DataFrame, features: int, out: Path) -> str:
    fig, (left, right) = figure(ncols=2)
    fa = summary[summary.method == "FA"]
    left.plot(fa.factors, fa.parameters, marker="o", color=color("FA"), label="FA: D M + D")
    left.axhline(covariance_parameters(features), color=color("sample covariance"), linestyle="--",
                 label="full covariance: D(D+1)/2")
    left.set_xlabel("number of factors M")
    left.set_ylabel("covariance parameters")
    left.set_title(f"Parameters (D = {features})")
    left.legend()
    right.errorbar(fa.factors, fa.gain_vs_sample, yerr=fa.gain_se, marker="o", color=color("FA"), label="FA")
    right.axhline(0.0, color=color("sample covariance"), linestyle="--", label="sample covariance")
    row = summary[summary.method == "Ledoit-Wolf"].iloc[0]
    right.axhline(row.gain_vs_sample, color=color("Ledoit-Wolf"), linestyle="--", label="Ledoit-Wolf")
    right.axhspan(row.gain_vs_sample - row.gain_se, row.gain_vs_sample + row.gain_se,
                  color=color("Ledoit-Wolf"), alpha=0.15)
    right.set_xlabel("number of factors M")
    right.set_ylabel("test log-likelihood per day\nminus the sample covariance's")
    right.set_title("Next year, out of sample (paired by year)")
    right.legend()
    return save_figure(fig, out, "fa_covariance")


def run(out: Path, *, quick: bool, seed: int = 0, device: str = "cpu", progress: bool = False) -> dict:
    """Rolling one-year-train / next-year-test comparison; writes ``fa_covariance.csv`` (mean and
    standard error over the windows), ``fa_covariance_windows.csv`` (every window, with the gain over the sample covariance of the
    same window) and
    ``figures/fa_covariance.png``.

    Quick: the test years 2016-2022 (7 windows). Full: 1991-2022 (32 windows). The fits are
    small full-batch problems and run on the CPU whatever ``device`` says.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    returns = log_returns(sp500_stocks(), percent=True)
    last = int(returns.index.year.max())
    first = last - 6 if quick else int(returns.index.year.min()) + 1
    rows = []
    for year, train, test in windows(returns, range(first, last + 1)):
        for row in evaluate_window(train.to_numpy(), test.to_numpy(), seed=seed):
            rows.append({"test_year": year, "train_days": len(train), "test_days": len(test), **row})
    per_window = pd.DataFrame(rows)
    # paired with the sample covariance of the same window: removes the year-to-year swings
    # of volatility that every estimator shares
    sample_by_year = per_window[per_window.method == "sample covariance"].set_index("test_year").loglik
    per_window["gain_vs_sample"] = per_window.loglik - per_window.test_year.map(sample_by_year)
    per_window.to_csv(out / "fa_covariance_windows.csv", index=False)
    grouped = per_window.groupby(["method", "factors"], dropna=False, sort=False)
    summary = grouped.agg(
        parameters=("parameters", "first"), loglik=("loglik", "mean"), se=("loglik", _standard_error),
        gain_vs_sample=("gain_vs_sample", "mean"), gain_se=("gain_vs_sample", _standard_error),
        wins_vs_sample=("gain_vs_sample", lambda v: float((v > 0).mean())),
    ).reset_index()
    summary["windows"] = per_window.test_year.nunique()
    summary.to_csv(out / "fa_covariance.csv", index=False)
    features = returns.shape[1]
    figure_file = _plot(summary, features, out)

    fa = summary[summary.method == "FA"].set_index("factors")
    sample = float(summary.loc[summary.method == "sample covariance", "loglik"].iloc[0])
    ledoit = float(summary.loc[summary.method == "Ledoit-Wolf", "loglik"].iloc[0])
    best_m = int(fa.loglik.idxmax())
    better = [int(m) for m, v in fa.gain_vs_sample.items() if v > 0]
    return {
        "features": features,
        "test_years": [first, last],
        "windows": int(per_window.test_year.nunique()),
        "loglik_sample_covariance": sample,
        "loglik_ledoit_wolf": ledoit,
        "loglik_fa": {int(m): float(v) for m, v in fa.loglik.items()},
        "gain_fa_vs_sample": {int(m): float(v) for m, v in fa.gain_vs_sample.items()},
        "gain_ledoit_wolf_vs_sample": ledoit - sample,
        "best_factors": best_m,
        "parameters_full": covariance_parameters(features),
        "parameters_fa": {int(m): int(v) for m, v in fa.parameters.items()},
        "files": ["fa_covariance.csv", "fa_covariance_windows.csv", figure_file],
        "caption": (
            f"With one year of training days, a factor model of the {features} stocks' daily returns "
            f"needs {covariance_parameters(features, 1)}-{covariance_parameters(features, max(FACTORS))} "
            f"covariance parameters instead of {covariance_parameters(features)}, and from "
            f"M = {min(better) if better else 'none'} factors on it predicts the next year better than the "
            f"sample covariance (best M = {best_m}: {fa.gain_vs_sample[best_m]:+.2f} nats per day). "
            f"Ledoit-Wolf shrinkage gains {ledoit - sample:+.2f} nats per day over the sample covariance."
        ),
    }
