"""The forecast experiment: splits without leakage, and a tiny run end to end."""
import json

import numpy as np
import pytest

from dlvm.experiments.studies import forecast
from dlvm.experiments.reporting.plots import check_figure


def test_stock_split_leaves_a_window_between_train_and_test():
    windows = np.stack([np.arange(s, s + 4) for s in range(200)])[..., None].astype(float)  # step index
    train, test = forecast.split(windows, "stocks", 100, 20, seed=0)
    mean, sd = windows[60:160].mean(), windows[60:160].std()
    last_train_step = (train * sd + mean).max()
    first_test_step = (test * sd + mean).min()
    assert first_test_step > last_train_step and len(test) == 20 and len(train) == 100
    assert abs(train.mean()) < 1e-9 and train.std() == pytest.approx(1.0)


def test_tiny_run_writes_scores_and_fans(tmp_path, monkeypatch):
    monkeypatch.setitem(forecast.SIZES, True, (60, 8, 20, 8))
    tiny = {"epochs": 1, "batch_size": 30}
    monkeypatch.setattr(forecast, "FORECASTERS", {
        "FA": forecast.Forecaster("fa", {"latent_dim": 2}, "exact", True, {"optimizer": "em", "epochs": 3}, {}),
        "VRAE": forecast.Forecaster("vrae", {"latent_dim": 2, "hidden": [4]}, "amortized", False, tiny, {}),
    })
    summary = forecast.run(tmp_path, quick=True)
    json.dumps(summary)
    scores = {(r["data"], r["method"]): r for r in summary["scores"]}
    assert len(scores) == 3 * 5
    for row in scores.values():
        assert row["CRPS"] > 0 and 0 <= row["coverage 50%"] <= row["coverage 90%"] <= 1
    assert scores[("sines", "VRAE")]["median ESS"] >= 1
    for name in ("forecast_fans", "forecast_crps"):
        check_figure(tmp_path / "figures" / f"{name}.png")
    assert "beats" in summary["caption"]
