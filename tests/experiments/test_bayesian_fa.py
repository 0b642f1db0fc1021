"""The diagnostics experiment: NUTS and SVI agree on a Bayesian FA; ArviZ and PSIS outputs exist."""
import pandas as pd
import pytest

from dlvm.experiments.studies.bayesian_fa import run


@pytest.mark.slow  # NUTS on two models
def test_diagnostics_quick(tmp_path):
    summary = run(tmp_path, quick=True)
    for name in summary["files"]:
        assert (tmp_path / name).stat().st_size > 0
    assert "figures/svi_vs_nuts.png" in summary["files"] and "figures/psis_khat.png" in summary["files"]
    table = pd.read_csv(tmp_path / "svi_vs_nuts.csv")
    assert set(table["quantity"]) == {"mu", "psi", "loading_norm"}
    assert summary["svi_vs_nuts_max_difference_in_sd"] < 2.0  # SVI's means within 2 NUTS sd
    assert summary["gmm_svi_vs_nuts_max_difference_in_sd"] < 2.0
    assert set(pd.read_csv(tmp_path / "gmm_svi_vs_nuts.csv")["quantity"]) == {"weight", "mean", "sd"}
    assert summary["nuts_max_r_hat"] < 1.1 and summary["nuts_divergences"] == 0
    assert 0.0 <= summary["khat_share_above_threshold"] <= 1.0
    assert summary["caption"].count(".") >= 2
