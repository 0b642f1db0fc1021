"""What a fitted run is for (§6.7): anomaly scores and latent features of a data file, as tables.

Behind ``dlvm anomaly`` and ``dlvm encode``: the run folder is rebuilt (:func:`load_run`), the data
read as at fit time (:func:`run_data`: windows, missing values, its shape checked), and one row
of output is written per row (or window) of the data, indexed by its date where it has one.
"""
from __future__ import annotations

import pandas as pd

from dlvm.inference.anomaly import AnomalyScores, anomaly_scores, percentiles
from dlvm.inference.features import Encoding, encode

from .runs import Run, run_data


def _rows(x, mask, index, columns: dict) -> pd.DataFrame:
    """A table of ``columns`` (name -> (B,) values), indexed by the data's dates when there is
    one per row, else by the row number."""
    frame = pd.DataFrame(columns)
    if index is not None and len(index) == len(x):
        frame.index = pd.Index(index, name=index.name or "date")
    else:
        frame.index = pd.RangeIndex(len(x), name="row")
    return frame


def score_run(run: Run, source=None, num_samples: int = 100) -> tuple[pd.DataFrame, AnomalyScores]:
    """Anomaly scores of ``source`` (default the run's data) under a run: per row the negative
    log-likelihood ``nll`` (nats), its standard error ``nll_se`` and its ``percentile`` among the
    training rows' scores, and the ``estimator`` (exact or IWAE-K). Returns (table, scores)."""
    if num_samples < 1:
        raise ValueError(f"--iwae-samples must be at least 1, got {num_samples}")
    x, mask, index = run_data(run.config, source, with_index=True)
    scores = anomaly_scores(run.trained, run.guide, x, mask, num_samples)
    reference = scores if source is None else anomaly_scores(run.trained, run.guide, *run_data(run.config),
                                                             num_samples)
    frame = _rows(x, mask, index, {"nll": scores.nll, "nll_se": scores.se,
                                   "percentile": percentiles(scores.nll, reference.nll),
                                   "estimator": scores.label})
    return frame, scores


def encode_run(run: Run, source=None, num_samples: int = 100) -> tuple[pd.DataFrame, Encoding]:
    """Posterior means and sds of z for ``source`` (default the run's data): columns
    ``mean_z0..`` and ``sd_z0..``, one row per row of the data. Returns (table, encoding)."""
    x, mask, index = run_data(run.config, source, with_index=True)
    found = encode(run.trained, run.guide, x, mask, num_samples)
    width = found.mean.shape[1]
    columns = {f"mean_z{k}": found.mean[:, k] for k in range(width)}
    columns.update({f"sd_z{k}": found.sd[:, k] for k in range(width)})
    return _rows(x, mask, index, columns), found
