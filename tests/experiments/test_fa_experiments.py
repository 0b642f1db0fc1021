"""The FA experiments in quick mode: files written and the chapter's conclusions reproduced."""
import json

import numpy as np
import pandas as pd
import pytest

from dlvm.experiments import EXPERIMENTS, get_experiment
from dlvm.experiments.studies.fa_covariance import covariance_parameters, gaussian_log_likelihood
from dlvm.experiments.studies.fa_vs_pca import fit_exact, held_out_log_likelihood, make_data


@pytest.fixture(scope="module")
def fa_vs_pca(tmp_path_factory):
    out = tmp_path_factory.mktemp("fa-vs-pca")
    return out, get_experiment("fa-vs-pca").run(out, quick=True, seed=0)


@pytest.fixture(scope="module")
def fa_covariance(tmp_path_factory):
    out = tmp_path_factory.mktemp("fa-covariance")
    return out, get_experiment("fa-covariance").run(out, quick=True, seed=0)


def _check_files(out, summary):
    json.dumps(summary)  # JSON-serialisable
    assert len(summary["caption"].split(". ")) >= 2
    for name in summary["files"]:
        path = out / name
        assert path.is_file() and path.stat().st_size > 0, name
    assert any(f.startswith("figures/") and f.endswith(".png") for f in summary["files"])
    assert any(f.endswith(".csv") for f in summary["files"])


def test_registered():
    assert EXPERIMENTS["fa-vs-pca"][0] == "fa_vs_pca"
    assert EXPERIMENTS["fa-covariance"][0] == "fa_covariance"


def test_fa_vs_pca_files(fa_vs_pca):
    out, summary = fa_vs_pca
    _check_files(out, summary)
    assert sum(f.endswith(".png") for f in summary["files"]) == 2
    table = pd.read_csv(out / "fa_vs_pca.csv")
    assert set(table.noise) == {"homoscedastic", "heteroscedastic"}
    assert set(table.model) == {"PPCA", "FA"}
    assert np.isfinite(table.cv_loglik).all()


def test_fa_picks_the_true_rank_under_both_noises(fa_vs_pca):
    best = fa_vs_pca[1]["best_components"]
    assert best["FA_homoscedastic"] == 10
    assert best["FA_heteroscedastic"] == 10
    assert best["PPCA_homoscedastic"] == 10


def test_ppca_overestimates_under_heteroscedastic_noise(fa_vs_pca):
    assert fa_vs_pca[1]["best_components"]["PPCA_heteroscedastic"] > 10


def test_fa_covariance_files(fa_covariance):
    out, summary = fa_covariance
    _check_files(out, summary)
    table = pd.read_csv(out / "fa_covariance.csv")
    fa = table[table.method == "FA"]
    assert fa.factors.tolist() == list(range(1, 9))
    assert fa.parameters.tolist() == [20 * m + 20 for m in range(1, 9)]
    assert (table.loc[table.method != "FA", "parameters"] == 210).all()


def test_factor_models_beat_the_sample_covariance_out_of_sample(fa_covariance):
    summary = fa_covariance[1]
    gains = summary["gain_fa_vs_sample"]
    # a few factors (at most 5, i.e. 120 covariance parameters instead of 210) already predict
    # the next year better than the 210-parameter sample covariance, and the best does clearly
    assert any(gains[m] > 0 for m in range(1, 6))
    assert max(gains.values()) > 0.1
    # shrinkage towards a structured target helps as well
    assert summary["gain_ledoit_wolf_vs_sample"] > 0


def test_parameter_counts():
    assert covariance_parameters(500) == 125_250  # the chapter's example (§6.1)
    # D M + D = 5,500 (the chapter prints 5,010, which is not D M + D)
    assert covariance_parameters(500, 10) == 5_500


def test_gaussian_log_likelihood_closed_form():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((50, 3))
    cov = np.diag([1.0, 2.0, 0.5])
    expected = np.mean(-0.5 * (3 * np.log(2 * np.pi) + np.log(np.linalg.det(cov)) + (x**2 / np.diag(cov)).sum(1)))
    assert gaussian_log_likelihood(x, np.zeros(3), cov) == pytest.approx(expected, abs=1e-12)


def test_exact_fit_matches_sklearn_on_the_synthetic_data():
    from sklearn.decomposition import FactorAnalysis as SkFA

    x = make_data(400, "heteroscedastic", seed=3, features=20, rank=3)
    fa = held_out_log_likelihood(fit_exact(x, 3, "diagonal"), x)
    assert fa >= SkFA(3, tol=1e-8, max_iter=5000).fit(x).score(x) - 1e-6
    # PPCA: the Tipping-Bishop maximum of the likelihood, from the eigenvalues l of the
    # (1/N) sample covariance: -(D log 2 pi + sum_top log l + (D - K) log s^2 + D) / 2
    eig = np.sort(np.linalg.eigvalsh(np.cov(x, rowvar=False, bias=True)))[::-1]
    s2 = eig[3:].mean()
    closed = -0.5 * (20 * np.log(2 * np.pi) + np.log(eig[:3]).sum() + 17 * np.log(s2) + 20)
    assert held_out_log_likelihood(fit_exact(x, 3, "isotropic"), x) == pytest.approx(closed, abs=1e-6)


def test_make_data_rejects_unknown_noise():
    with pytest.raises(ValueError, match="noise must be one of"):
        make_data(10, "pink")
