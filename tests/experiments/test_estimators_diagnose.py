"""The estimators experiment (quick) and diagnostics of a run folder."""
import json

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.decomposition import FactorAnalysis

from dlvm.experiments import get_experiment
from dlvm.experiments.runs.diagnose import diagnose
from dlvm.experiments.runs.compare import compare
from dlvm.experiments.studies.estimators import synthetic_table
from dlvm.experiments.runs.folders import build_pair
from dlvm.inference import fit


def test_estimators_experiment_quick(tmp_path):
    summary = get_experiment("estimators").run(tmp_path, quick=True)
    json.dumps(summary)
    for name in summary["files"]:
        assert (tmp_path / name).exists()
    assert "fa" in summary["models"]
    variance = summary["gradient_variance"]
    # exact guides give a deterministic gradient; score-function gradients are the noisiest
    assert variance["fa/exact/trace"] < 1e-12 * variance["fa/amortized/trace"]
    assert variance["fa/amortized/trace"] < variance["fa/amortized-score/trace"]
    assert abs(summary["gap"]["fa/exact"]) < 1e-6 and summary["gap"]["fa/amortized"] > 0
    # quick mode still compares converged fits: FA's gaps are small and every curve has flattened
    assert summary["gap"]["fa/amortized"] < 0.05 and abs(summary["gap"]["gmm/exact"]) < 1e-6
    curves = pd.read_csv(tmp_path / "curves.csv")
    for (model, guide), curve in curves.groupby(["model", "guide"]):
        late = curve["elbo"].iloc[-2:]  # the last 50 steps
        assert late.max() - late.min() < 0.2, (model, guide)
        if model == "fa":  # it starts at the maximum-likelihood fit and stays there
            assert curve["log_likelihood"].iloc[-1] > curve["log_likelihood"].iloc[0] - 0.01, guide
    gradients = pd.read_csv(tmp_path / "gradients.csv")
    assert {"guide", "elbo", "group", "variance", "snr", "seconds_per_step"} <= set(gradients.columns)


def test_compare_refuses_an_estimator_that_does_not_apply():
    with pytest.raises(ValueError, match="estimator 'traceenum' does not apply to fa; choose from: meanfield"):
        compare("fa", synthetic_table(40, 6), ["trace", "traceenum"], None, num_draws=3, steps=2, eval_every=1)


def test_compare_keeps_the_estimators_asked_for(tmp_path):
    data = synthetic_table(40, 6)
    result = compare("fa", data, ["trace", "tracegraph"], tmp_path, num_draws=5, steps=4, eval_every=2)
    assert set(result["gradients"].elbo) <= {"trace", "tracegraph"}
    assert (tmp_path / "figures" / "gradient_variance.png").exists()


def _bayesian_fa_run(tmp_path, x):
    config = {"model": "fa", "guide": "exact", "event_shape": [4], "dtype": "float64",
              "model_options": {"latent_dim": 1, "bayesian": True}, "guide_options": {}}
    _, trained, guide = build_pair(config)
    run = tmp_path / "run"
    fit(trained, guide, x, epochs=300, lr=0.03, progress=False, checkpoint_dir=run, config=config)
    (run / "config.json").write_text(json.dumps(config))
    return run


def bayesian_fa_data():
    torch.manual_seed(0)
    x = torch.randn(25, 1, dtype=torch.float64) @ torch.tensor([[1.0, 0.8, 0.6, 0.0]], dtype=torch.float64)
    return (x + 0.5 * torch.randn(25, 4, dtype=torch.float64)).numpy()


def test_diagnose_svi(tmp_path):
    x = bayesian_fa_data()
    run = _bayesian_fa_run(tmp_path, x)
    svi = diagnose(run, x, mcmc=False, out=tmp_path / "svi", num_draws=100, khat_draws=50)
    table = pd.read_csv(tmp_path / "svi" / "summary.csv", index_col=0)
    assert list(table.columns) == ["mean", "sd", "hdi_low", "hdi_high"]
    assert sum(svi["pareto_k_counts"].values()) == 25
    # leave-one-out fit falls short of the in-sample maximum likelihood (scikit-learn's FA) by
    # about the effective number of parameters (12 here)
    best = FactorAnalysis(n_components=1).fit(x).score(x) * len(x)
    assert best - 40 < svi["elpd_loo"] < best
    assert 0 < svi["p_loo"] < 25
    assert (tmp_path / "svi" / "figures" / "ppc.png").exists()


@pytest.mark.slow  # NUTS
def test_diagnose_mcmc(tmp_path):
    x = bayesian_fa_data()
    run = _bayesian_fa_run(tmp_path, x)
    mcmc = diagnose(run, x, mcmc=True, out=tmp_path / "mcmc", num_samples=60, warmup=60, chains=1, khat_draws=50)
    table = pd.read_csv(tmp_path / "mcmc" / "summary.csv", index_col=0)
    assert {"ess_bulk", "r_hat"} <= set(table.columns)
    assert {"figures/trace.png", "figures/forest.png"} <= set(mcmc["files"])
