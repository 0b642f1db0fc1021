"""The anomaly experiment's pieces against independent numbers (scikit-learn's metrics, counts by
hand), one split of ECG5000 with the exact models, and the whole quick run (slow)."""
import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from dlvm.experiments import EXPERIMENTS, get_experiment
from dlvm.experiments.studies import anomaly
from dlvm.experiments.data.sets import ecg5000
from dlvm.experiments.reporting.plots import check_figure


def test_split_fits_on_normal_beats_and_tests_every_abnormal_one():
    labels = ecg5000()[1]
    train, test = anomaly.ecg_split(labels, 3)
    assert (labels[train] == 1).all() and not set(train) & set(test)
    assert set(np.flatnonzero(labels != 1)) <= set(test)
    assert len(train) == int(0.6 * (labels == 1).sum()) and len(train) + len(test) == len(labels)


def test_auc_table_matches_sklearn_metrics():
    rng = np.random.default_rng(0)
    results = []
    for _ in range(3):
        y = rng.random(60) < 0.4
        results.append(anomaly.SplitResult(y, {"a": y + rng.normal(size=60), "b": rng.normal(size=60)},
                                           {"a": "exact", "b": "scikit-learn"}, {"a": 0.0}))
    table = anomaly.auc_table(results).set_index("method")
    auroc = [roc_auc_score(r.abnormal, r.scores["a"]) for r in results]
    auprc = [average_precision_score(r.abnormal, r.scores["a"]) for r in results]
    assert table.loc["a", "auroc_mean"] == pytest.approx(np.mean(auroc))
    assert table.loc["a", "auroc_sd"] == pytest.approx(np.std(auroc, ddof=1))
    assert table.loc["a", "auprc_mean"] == pytest.approx(np.mean(auprc))
    assert table.index[0] == "a" and pd.isna(table.loc["b", "median_iwae_se"])


def test_least_likely_days_and_year_counts_by_hand():
    dates = pd.bdate_range("2007-01-01", "2009-12-31")
    nll = pd.Series(np.arange(len(dates), dtype=float), index=dates)
    nll[dates.year == 2008] += 10_000  # every 2008 day is less likely than any other
    days = anomaly.least_likely_days(nll, fraction=0.1)
    assert len(days) == round(0.1 * len(dates)) and days.is_monotonic_decreasing
    counts = anomaly.year_counts(days, span_years=3.0)
    assert counts["2008"] == len(days) and counts["2020"] == 0 and counts["busiest_year"] == 2008
    assert counts["expected_per_year"] == pytest.approx(len(days) / 3)
    assert anomaly._stand_out({"m": counts}).endswith("under 1 of the 1 models and 2020 under 0")


def test_baselines_flag_outlying_rows():
    rng = np.random.default_rng(1)
    train = rng.normal(size=(200, 5))
    test = np.r_[rng.normal(size=(50, 5)), rng.normal(size=(10, 5)) + 6]
    y = np.r_[np.zeros(50), np.ones(10)]
    for name, scores in anomaly.baseline_scores(train, test, 0, components=2).items():
        assert name in anomaly.BASELINES and roc_auc_score(y, scores) > 0.95, name


def test_one_ecg_split_with_the_exact_models(monkeypatch):
    monkeypatch.setattr(anomaly, "DETECTORS", {k: anomaly.DETECTORS[k] for k in ("FA", "PPCA")})
    series, labels = ecg5000()
    result = anomaly.score_split(series[:, ::4], labels, 0, quick=True)
    assert set(result.scores) == {"FA", "PPCA", *anomaly.BASELINES}
    assert result.estimator["FA"] == "exact" and result.standard_error["FA"] == 0
    assert result.abnormal.sum() == (labels != 1).sum()
    assert roc_auc_score(result.abnormal, result.scores["PPCA"]) > 0.95
    assert set(result.percentile) == {"FA", "PPCA"}
    normal = anomaly.flagged([result], "PPCA", False)
    assert normal == pytest.approx(np.mean(result.percentile["PPCA"][~result.abnormal] > 95))
    assert normal < 0.5 < anomaly.flagged([result], "PPCA", True)
    assert anomaly.flagged([result], "one-class SVM", True) is None


@pytest.mark.slow
def test_quick_run(tmp_path):
    summary = get_experiment("anomaly").run(tmp_path, quick=True)
    json.dumps(summary, allow_nan=False)
    for name in summary["files"]:
        assert (tmp_path / name).is_file(), name
        if name.endswith(".png"):
            check_figure(tmp_path / name)
    methods = {row["method"] for row in summary["auc"]}
    assert methods == {"FA", "PPCA", "GMM", "VAE", "VRAE", "TimeVAE", *anomaly.BASELINES}
    assert all(0.9 < row["auroc_mean"] <= 1 for row in summary["auc"])
    assert summary["markets"]["FA, 20 stocks"]["2008"] > 3 * summary["markets"]["FA, 20 stocks"]["expected_per_year"]
    assert "anomaly" in EXPERIMENTS


def test_overlapping_windows_merge_into_spans():
    days = pd.bdate_range("2020-01-01", periods=200)
    starts = days[[0, 5, 100, 10, 190]]  # 0-19, 5-24, 10-29 overlap; 100-119; 190 runs off the end
    spans = anomaly.merged_spans(starts, days)
    assert spans == [(days[0], days[29]), (days[100], days[119]), (days[190], days[199])]
