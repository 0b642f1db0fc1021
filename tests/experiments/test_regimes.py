"""The regimes experiment in quick mode, and the per-row regime table."""
import json

import numpy as np
import pandas as pd
import torch

from dlvm.experiments import EXPERIMENTS, get_experiment
from dlvm.experiments.reporting.metrics import align_labels, label_agreement
from dlvm.experiments.runs.uses import regime_table
from dlvm.models import GaussianMixture


def test_quick_run_flags_the_crises_and_matches_the_references(tmp_path):
    assert "regimes" in EXPERIMENTS
    summary = get_experiment("regimes").run(tmp_path, quick=True)
    json.dumps(summary)
    for name in summary["files"]:
        assert (tmp_path / name).exists(), name
    shares = summary["hmm2"]["crisis_high_volatility_share"]
    assert shares["2008-09..2009-03"] > 0.8 and shares["2020-03"] > 0.8
    assert summary["hmm2"]["regime_agreement"] >= 0.99
    for name in ("gmm2", "hmm2"):
        assert summary[name]["log_likelihood"] >= summary[name]["reference_log_likelihood"] - 1e-3
    table = pd.read_csv(tmp_path / "regime_parameters.csv")
    high = table[(table.model == "hmm2") & (table.regime == 1)].iloc[0]
    low = table[(table.model == "hmm2") & (table.regime == 0)].iloc[0]
    assert high.volatility > 2 * low.volatility


def test_regime_table_orders_regimes_by_volatility():
    model = GaussianMixture(1, 2, "diag").double()
    model.gaussians.variances = torch.tensor([[9.0], [1.0]], dtype=torch.float64)
    x = np.array([[0.1], [8.0], [-0.2]])
    table = regime_table(model, x)
    assert list(table.columns) == ["regime", "p_0", "p_1"]
    np.testing.assert_array_equal(table.regime, [0, 1, 0])  # regime 0 = low volatility
    np.testing.assert_allclose(table[["p_0", "p_1"]].sum(axis=1), 1.0)


def test_label_alignment():
    reference = np.array([0, 0, 1, 1, 2, 2])
    labels = np.array([2, 2, 0, 0, 1, 0])
    np.testing.assert_array_equal(align_labels(labels, reference, 3), [0, 0, 1, 1, 2, 1])
    assert label_agreement(labels, reference, 3) == 5 / 6
