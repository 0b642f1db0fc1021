"""Forecasts from latent models (§6.7): CRPS and interval coverage on held-out windows.

Each data set is a set of windows (N, 24, D): the TimeGAN sines, TimeGAN's Google stock windows
(whose rows TimeGAN reverses; turned back here so that the forecast runs forward in time) and
TimeVAE's Verint stock windows (stockv). Sines are split at random; the stock windows, cut at
every step, are split in time with a gap of one window, so no test step was seen in training.
Every feature is standardised by the training windows' mean and sd, and scores are in those
units.

Each model is fitted to the complete training windows; on a test window it sees the first
T - h steps and predicts the last h (:func:`dlvm.inference.forecast.predict`: exact for FA of
the flattened windows and the HMM, adaptive importance sampling of z for the VRAE and TimeVAE,
decoder noise included). Baselines predict from the same steps: random walk, the window's
historical mean, and a VAR(3) fitted by least squares to every training step. Scores per
method: the mean CRPS of the predictive draws (fair estimator) over test windows, steps and
features, and the share of actual values inside the central 50 % and 90 % intervals.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from matplotlib.ticker import NullFormatter

from ...guides import pair
from ...inference import fit
from ...inference.forecast import BASELINES, coverage, crps_samples, forecast_mask, predict
from ...models import build_model

from ..data.sets import stockv, timegan_sines, timegan_stocks
from ..reporting.plots import figure, save_figure

HORIZON = 6
LEVELS = (0.5, 0.9)
TRAIN_SHARE = 0.8
#: training windows, test windows, predictive draws and importance particles, quick and full
SIZES = {True: (1000, 100, 200, 128), False: (3000, 500, 500, 512)}


@dataclass(frozen=True)
class Forecaster:
    """A registered model fitted for forecasts: name, options, guide, whether it reads flattened
    windows (T D,), and fit options in quick and full mode."""

    model: str
    options: dict
    guide: str
    flat: bool
    quick: dict
    full: dict


FORECASTERS = {
    "FA": Forecaster("fa", {"latent_dim": 8}, "exact", True, {"optimizer": "em", "epochs": 200},
                     {"optimizer": "em", "epochs": 1000}),
    "HMM": Forecaster("hmm", {"states": 4, "covariance": "full"}, "exact", False,
                      {"optimizer": "em", "epochs": 50}, {"optimizer": "em", "epochs": 200}),
    "VRAE": Forecaster("vrae", {"latent_dim": 8, "hidden": [32]}, "amortized", False,
                       {"epochs": 15, "batch_size": 64, "lr": 1e-2, "clip_norm": 10.0},
                       {"epochs": 100, "batch_size": 64, "lr": 3e-3, "clip_norm": 10.0}),
    "TimeVAE": Forecaster("timevae", {"latent_dim": 8, "hidden": [32, 64], "likelihood": "gaussian"}, "amortized",
                          False, {"epochs": 30, "batch_size": 64, "lr": 2e-3}, {"epochs": 200, "batch_size": 64, "lr": 1e-3}),
}


def load_windows(name: str) -> np.ndarray:
    """The data set's windows (N, T, D), forward in time."""
    if name == "sines":
        return timegan_sines()
    if name == "stocks":
        return timegan_stocks()[:, ::-1].copy()
    if name == "stockv":
        return stockv(100)
    raise ValueError(f"unknown forecast data set {name!r}")


def split(windows: np.ndarray, name: str, train_rows: int, test_rows: int, seed: int):
    """(train, test) windows, standardised by the training windows' per-feature mean and sd.
    Sines: a random split; stock windows (one per step, in time order): the first TRAIN_SHARE
    for training, test windows from one window length after the last training window on."""
    n, t = windows.shape[:2]
    if name == "sines":
        order = np.random.default_rng(seed).permutation(n)
        train, test = windows[order[:train_rows]], windows[order[train_rows:train_rows + test_rows]]
    else:
        cut = int(TRAIN_SHARE * n)
        train = windows[max(0, cut - train_rows):cut]
        later = np.arange(cut + t, n)
        pick = np.random.default_rng(seed).choice(later, size=min(test_rows, len(later)), replace=False)
        test = windows[np.sort(pick)]
    flat = train.reshape(-1, train.shape[-1])
    mean, sd = flat.mean(0), flat.std(0)
    sd = np.where(sd > 0, sd, 1.0)
    return (train - mean) / sd, (test - mean) / sd


def fit_forecaster(spec: Forecaster, train: np.ndarray, *, quick: bool, seed: int, device: str = "cpu"):
    """Fit the forecaster's model on training windows (N, T, D) -> (model, guide)."""
    x = train.reshape(len(train), -1) if spec.flat else train
    torch.manual_seed(seed)
    model = build_model(spec.model, x.shape[1:], spec.options)
    if spec.guide == "exact":
        model = model.double()
    trained, guide = pair(model, spec.guide, x.shape[1:])
    fit(trained, guide, x, progress=False, seed=seed, device=device, **(spec.quick if quick else spec.full))
    return trained.cpu(), guide.cpu()


def model_draws(spec: Forecaster, trained, guide, test: np.ndarray, num_samples: int, particles: int):
    """Predictive draws (S, B, HORIZON, D) of the last steps of the test windows."""
    mask = forecast_mask(test.shape, HORIZON)
    x = torch.as_tensor(test)
    if spec.flat:
        x, mask = x.reshape(len(test), -1), mask.reshape(len(test), -1)
    found = predict(trained, guide, x, mask, num_samples, particles=particles)
    return found.samples.reshape((num_samples,) + test.shape)[:, :, -HORIZON:], found.ess


def scores(draws: np.ndarray, actual: np.ndarray) -> dict:
    """Mean CRPS and the coverage of the LEVELS intervals of draws (S, B, h, D) at actual (B, h, D)."""
    out = {"CRPS": float(crps_samples(draws, actual).mean())}
    out.update({f"coverage {round(100 * a)}%": coverage(draws, actual, a) for a in LEVELS})
    return out


def evaluate_set(name: str, *, quick: bool, seed: int, device: str = "cpu", progress: bool = False):
    """Fit every forecaster and baseline on one data set: (table rows, {method: draws}, test windows)."""
    train_rows, test_rows, num_samples, particles = SIZES[quick]
    train, test = split(load_windows(name), name, train_rows, test_rows, seed)
    actual, past = test[:, -HORIZON:], test[:, :-HORIZON]
    rng = np.random.default_rng(seed)
    rows, draws = [], {}
    for method, baseline in BASELINES.items():
        draws[method] = baseline(train, past, HORIZON, num_samples, rng)
    for method, spec in FORECASTERS.items():
        if progress:
            print(f"  {name}: {method}", flush=True)
        trained, guide = fit_forecaster(spec, train, quick=quick, seed=seed, device=device)
        draws[method], ess = model_draws(spec, trained, guide, test, num_samples, particles)
        if ess is not None:
            rows.append({"data": name, "method": method, "median ESS": float(np.median(ess))})
    table = [{"data": name, "method": m, "kind": "baseline" if m in BASELINES else "latent model",
              **scores(d, actual)} for m, d in draws.items()]
    for extra in rows:
        next(r for r in table if r["method"] == extra["method"])["median ESS"] = extra["median ESS"]
    return table, draws, test


def fan_figure(results: dict, tables: pd.DataFrame, out: Path, feature: int = 0) -> str:
    """Forecast fans of one test window per data set: the observed steps, the held-back steps,
    and the median with 50 % and 90 % intervals of the best latent model and of the random walk."""
    fig, axes = figure(len(results), 2, width=4.2, height=2.8, squeeze=False)
    for col, (name, (draws, test)) in enumerate(results.items()):
        sub = tables[tables["data"] == name]
        best = sub[sub["kind"] == "latent model"].sort_values("CRPS")["method"].iloc[0]
        window = int(np.argmax(test[:, :, feature].std(1)))  # a window that moves
        t = np.arange(test.shape[1])
        future = t[-HORIZON:]
        for row, method in enumerate((best, "random walk")):
            ax = axes[row, col]
            d = draws[method][:, window, :, feature]
            lo90, lo50, mid, hi50, hi90 = np.quantile(d, [0.05, 0.25, 0.5, 0.75, 0.95], axis=0)
            ax.fill_between(future, lo90, hi90, color="tab:blue", alpha=0.18, label="90% interval")
            ax.fill_between(future, lo50, hi50, color="tab:blue", alpha=0.35, label="50% interval")
            ax.plot(future, mid, color="tab:blue", label="median")
            ax.plot(t[:-HORIZON + 1], test[window, :-HORIZON + 1, feature], color="black", label="observed")
            ax.plot(future, test[window, -HORIZON:, feature], color="black", ls="--", marker="o", ms=3,
                    label="held back")
            crps = float(sub.loc[sub["method"] == method, "CRPS"].iloc[0])
            ax.set_title(f"{name}: {method} (CRPS {crps:.3f})", fontsize=9)
            ax.set_xlabel("step")
            if col == 0:
                ax.set_ylabel("standardised value")
    axes[0, 0].legend(fontsize=7, loc="best")
    return save_figure(fig, out, "forecast_fans")


def score_figure(table: pd.DataFrame, out: Path) -> str:
    """Mean CRPS per method and data set (log scale where the values span more than 20x), each bar
    labelled with its 50 % / 90 % coverage."""
    names = list(dict.fromkeys(table["data"]))
    fig, axes = figure(len(names), 1, width=4.2, height=3.2)
    for ax, name in zip(np.atleast_1d(axes), names):
        sub = table[table["data"] == name]
        colours = ["tab:gray" if kind == "baseline" else "tab:blue" for kind in sub["kind"]]
        ax.barh(sub["method"], sub["CRPS"], color=colours)
        ax.invert_yaxis()
        log = sub["CRPS"].max() > 20 * sub["CRPS"].min()
        if log:
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(NullFormatter())
            ax.set_xlim(sub["CRPS"].min() / 2, sub["CRPS"].max() * 8)
        else:
            ax.set_xlim(0, sub["CRPS"].max() * 1.35)
        for y, (crps, c50, c90) in enumerate(zip(sub["CRPS"], sub["coverage 50%"], sub["coverage 90%"])):
            ax.text(crps * 1.1 if log else crps + 0.02 * sub["CRPS"].max(), y, f"{100 * c50:.0f}/{100 * c90:.0f}%",
                    va="center", fontsize=7)
        ax.set_title(f"{name}: CRPS (lower is better)\nlabels: 50%/90% interval coverage", fontsize=9)
    return save_figure(fig, out, "forecast_crps")


def _caption(table: pd.DataFrame) -> str:
    parts = []
    for name, sub in table.groupby("data", sort=False):
        models = sub[sub["kind"] == "latent model"].set_index("method")
        bases = sub[sub["kind"] == "baseline"].set_index("method")
        best = models["CRPS"].idxmin()
        beaten = [b for b in bases.index if models.loc[best, "CRPS"] < bases.loc[b, "CRPS"]]
        parts.append(f"{name}: best latent model {best} (CRPS {models.loc[best, 'CRPS']:.3f}, 50%/90% coverage "
                     f"{100 * models.loc[best, 'coverage 50%']:.0f}/{100 * models.loc[best, 'coverage 90%']:.0f}%) "
                     f"beats {len(beaten)} of {len(bases)} baselines"
                     f"{' (' + ', '.join(beaten) + ')' if beaten else ''}; best baseline "
                     f"{bases['CRPS'].idxmin()} ({bases['CRPS'].min():.3f})")
    return (f"Forecasts of the last {HORIZON} of 24 steps from the first {24 - HORIZON}, on held-out windows, in "
            "standardised units (mean CRPS, lower is better; coverage of the central 50% and 90% intervals). "
            + "; ".join(parts) + ".")


def run(out: Path, *, quick: bool, seed: int = 0, device: str = "cpu", progress: bool = False) -> dict:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows, fans = [], {}
    for name in ("sines", "stocks", "stockv"):
        table, draws, test = evaluate_set(name, quick=quick, seed=seed, device=device, progress=progress)
        rows += table
        fans[name] = (draws, test)
    table = pd.DataFrame(rows)
    table.to_csv(out / "forecast_scores.csv", index=False)
    files = ["forecast_scores.csv", score_figure(table, out), fan_figure(fans, table, out)]
    return {"horizon": HORIZON, "scores": table.astype(object).where(table.notna(), None).to_dict("records"),
            "files": files, "caption": _caption(table)}
