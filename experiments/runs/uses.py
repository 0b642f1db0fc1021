"""What a fitted run is for (§6.7): anomaly scores and latent features of a data file, as tables.

Behind ``dlvm anomaly`` and ``dlvm encode``: the run folder is rebuilt (:func:`load_run`), the data
read as at fit time (:func:`run_data`: windows, missing values, its shape checked), and one row
of output is written per row (or window) of the data, indexed by its date where it has one.
"""
from __future__ import annotations

import pandas as pd
import pyro

from ...inference.anomaly import AnomalyScores, anomaly_scores, percentiles
from ...inference.features import Encoding, encode

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
