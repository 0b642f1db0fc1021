"""What a fitted run is for (§6.7): anomaly scores, latent features, forecasts and regimes of a
data file, as tables.

Behind ``dlvm anomaly``, ``dlvm encode``, ``dlvm forecast`` and ``dlvm regimes``: the run folder
is rebuilt (:func:`load_run`), the data read as at fit time (:func:`run_data`: windows, missing
values, its shape checked), and one row of output is written per row (or window) of the data,
indexed by its date where it has one.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pyro
import torch

from ...inference.anomaly import AnomalyScores, anomaly_scores, percentiles
from ...inference.features import Encoding, encode
from ...inference.forecast import Predictive, forecast_mask, forecast_method, predict

from ..reporting.metrics import relabel, volatility_order

from .folders import Run, run_data


def _row_index(index, rows: int, config: dict) -> pd.Index:
    """The label of each output row: the table's date for a row (or an HMM's time step), the date
    a window starts on for windows cut from the table, else the row number."""
    if index is not None and config.get("window") and len(index) != rows:
        index = index[:: config.get("stride") or config["window"]][:rows]
        name = "window_start"
    else:
        name = index.name if index is not None and index.name else "date"
    if index is None or len(index) != rows:
        return pd.RangeIndex(rows, name="row")
    return pd.Index(index, name=name)


def _rows(index, config: dict, columns: dict) -> pd.DataFrame:
    """A table of ``columns`` (name -> (B,) values) indexed by :func:`_row_index`."""
    frame = pd.DataFrame(columns)
    frame.index = _row_index(index, len(frame), config)
    return frame


def _seeded_scores(run: Run, x, mask, num_samples: int, seed: int) -> AnomalyScores:
    """:func:`anomaly_scores` from a fixed random state: the same importance draws on every call,
    and for a Bayesian model the same draw of its globals for the data and its training reference."""
    pyro.set_rng_seed(seed)
    return anomaly_scores(run.trained, run.guide, x, mask, num_samples)


def score_run(run: Run, source=None, num_samples: int = 100, seed: int = 0) -> tuple[pd.DataFrame, AnomalyScores]:
    """Anomaly scores of ``source`` (default the run's data) under a run: per row the negative
    log-likelihood ``nll`` (nats), its standard error ``nll_se`` and its ``percentile`` among the
    training rows' scores, and the ``estimator`` (exact, exact one-step or IWAE-K); an HMM's rows
    are its time steps. Returns (table, scores)."""
    if num_samples < 1:
        raise ValueError(f"--iwae-samples must be at least 1, got {num_samples}")
    x, mask, index = run_data(run.config, source, with_index=True)
    scores = _seeded_scores(run, x, mask, num_samples, seed)
    reference = scores if source is None else _seeded_scores(run, *run_data(run.config), num_samples, seed)
    frame = _rows(index, run.config, {"nll": scores.nll, "nll_se": scores.se,
                                   "percentile": percentiles(scores.nll, reference.nll),
                                   "estimator": scores.label})
    return frame, scores


def encode_run(run: Run, source=None, num_samples: int = 100, seed: int = 0) -> tuple[pd.DataFrame, Encoding]:
    """Posterior means and sds of z for ``source`` (default the run's data): columns
    ``mean_z0..`` and ``sd_z0..``, one row per row of the data. Returns (table, encoding)."""
    if num_samples < 1:
        raise ValueError(f"--samples must be at least 1, got {num_samples}")
    x, mask, index = run_data(run.config, source, with_index=True)
    pyro.set_rng_seed(seed)
    found = encode(run.trained, run.guide, x, mask, num_samples)
    width = found.mean.shape[1]
    columns = {f"mean_z{k}": found.mean[:, k] for k in range(width)}
    columns.update({f"sd_z{k}": found.sd[:, k] for k in range(width)})
    return _rows(index, run.config, columns), found


QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


def forecast_run(run: Run, source=None, horizon: int | None = None, num_samples: int = 200, seed: int = 0,
                 particles: int = 256) -> tuple[pd.DataFrame, Predictive]:
    """Forecasts of the last ``horizon`` steps of each window of ``source`` (default the run's
    data) given the steps before, and draws of its missing entries anywhere (:func:`predict`).

    One output row per predicted entry: the row's label, ``step`` (for sequences), ``feature``,
    the predictive ``mean`` and ``sd``, quantiles ``q05 .. q95`` and, for a forecast, the held
    back ``actual`` value. Returns (table, predictive)."""
    if num_samples < 2:
        raise ValueError(f"--samples must be at least 2, got {num_samples}")
    method = forecast_method(run.trained)  # refuse a model that cannot forecast before reading data
    x, mask, index = run_data(run.config, source, with_index=True)
    seen = torch.ones(x.shape, dtype=torch.bool) if mask is None else torch.as_tensor(mask, dtype=torch.bool)
    if horizon is not None:
        seen = forecast_mask(tuple(x.shape), horizon, seen)
    elif bool(seen.all()):
        raise ValueError("nothing to predict: the data have no missing values; give --horizon to forecast")
    observed = None if mask is None else torch.as_tensor(mask, dtype=torch.bool)
    pyro.set_rng_seed(seed)
    found = predict(run.trained, run.guide, x, seen, num_samples, particles=particles)
    wanted = ~seen.numpy()
    labels = np.asarray(_row_index(index, x.shape[0], run.config))
    where = np.nonzero(wanted)
    columns = {(_row_index(index, x.shape[0], run.config).name or "row"): labels[where[0]]}
    if x.ndim == 3:
        columns["step"] = where[1]
    names = np.asarray(run.config.get("columns") or [f"x{d}" for d in range(x.shape[-1])])
    columns["feature"] = names[where[-1]] if len(names) == x.shape[-1] else where[-1]
    draws = found.samples[(slice(None),) + where]
    columns["mean"], columns["sd"] = draws.mean(0), draws.std(0, ddof=1)
    for p, values in zip(QUANTILES, np.quantile(draws, QUANTILES, axis=0)):
        columns[f"q{round(100 * p):02d}"] = values
    if horizon is not None:
        actual = np.asarray(x, dtype=float)[where]
        if observed is not None:
            actual = np.where(observed.numpy()[where], actual, np.nan)
        columns["actual"] = actual
    if found.ess is not None:
        columns["ess"] = found.ess[where[0]]
    columns["method"] = method
    return pd.DataFrame(columns), found


def regime_table(model, data, mask=None, index=None) -> pd.DataFrame:
    """Most probable regime and posterior regime probabilities for every row of ``data``.

    ``data`` is the model's data: rows (N, D) for a mixture (probabilities from eq. 6.4),
    sequences (N, T, D) for an HMM (smoothed marginals p(z_t | x_{1:T}); a ``viterbi`` column holds
    the most probable path, and a ``sequence`` column appears when N > 1). Regimes are numbered
    from the lowest to the highest volatility. Columns: [sequence,] regime, [viterbi,] p_0..p_{K-1}.
    """
    x = torch.tensor(np.asarray(data), dtype=model.dtype, device=model.device)
    m = None if mask is None else torch.tensor(np.asarray(mask), device=model.device).to(torch.bool)
    with torch.no_grad():
        probs = model.posterior(x, m).cpu().numpy()
        variances = torch.diagonal(model.covariances(), dim1=-2, dim2=-1).cpu().numpy()
    order = volatility_order(variances)
    probs = probs[..., order]
    frame = {}
    if probs.ndim == 3:
        n, t, k = probs.shape
        if n > 1:
            frame["sequence"] = np.repeat(np.arange(n), t)
        frame["regime"] = probs.argmax(-1).reshape(-1)
        frame["viterbi"] = relabel(model.viterbi(x, m).cpu().numpy().reshape(-1), order)
        probs = probs.reshape(n * t, k)
    else:
        frame["regime"] = probs.argmax(-1)
    for i in range(probs.shape[-1]):
        frame[f"p_{i}"] = probs[:, i]
    return pd.DataFrame(frame, index=index)
