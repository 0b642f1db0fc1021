"""Anomaly scores against independent numbers: scikit-learn's FA log-density, a by-hand delta
method and empirical CDF, the exact likelihood that IWAE-K approaches, and hmmlearn's prefix
likelihoods for an HMM's one-step scores."""
import math

import numpy as np
import pyro
import pytest
import torch
from sklearn.decomposition import FactorAnalysis as SkFactorAnalysis

from dlvm.guides import pair
from dlvm.inference import fit, log_weights
from dlvm.inference.anomaly import anomaly_scores, iwae_scores, log_mean_exp_se, percentiles
from dlvm.models import VAE, FactorAnalysis, GaussianHMM
from tests.models.test_hmm import copy_parameters, random_reference


@pytest.fixture(scope="module")
def rows():
    rng = np.random.default_rng(3)
    return rng.normal(size=(200, 2)) @ rng.normal(size=(2, 6)) + rng.normal(size=(200, 6)) * [0.3, 0.5, 1, 1, 0.7, 0.4]


def fa_at(sk: SkFactorAnalysis) -> FactorAnalysis:
    """dlvm's FA at scikit-learn's fitted parameters."""
    model = FactorAnalysis(sk.mean_.size, sk.components_.shape[0]).double()
    model.loc = torch.as_tensor(sk.mean_)
    model.loadings = torch.as_tensor(sk.components_.T.copy())
    model.noise_variance = torch.as_tensor(sk.noise_variance_)
    return model


def test_exact_nll_is_sklearn_fa_log_density(rows):
    sk = SkFactorAnalysis(2, random_state=0).fit(rows)
    model, guide = pair(fa_at(sk), "exact", (6,))
    scores = anomaly_scores(model, guide, rows[:50], num_samples=10)
    assert scores.method == "exact" and scores.label == "exact"
    np.testing.assert_allclose(-scores.nll, sk.score_samples(rows[:50]), rtol=1e-10)
    assert np.all(scores.se == 0)


def test_delta_method_standard_error_by_hand():
    log_w = torch.randn(40, 5, dtype=torch.float64) * 2 - 300  # far below exp's range: stability
    w = np.exp(log_w.numpy() + 300)
    by_hand = w.std(0, ddof=1) / (math.sqrt(40) * w.mean(0))
    np.testing.assert_allclose(log_mean_exp_se(log_w).numpy(), by_hand, rtol=1e-10)
    assert torch.isnan(log_mean_exp_se(log_w[:1])).all()


def test_percentile_is_the_empirical_cdf():
    reference = np.array([3.0, 1.0, 2.0, 2.0, 5.0])
    scores = np.array([0.5, 2.0, 4.0, 9.0])
    by_hand = [100 * np.mean(reference <= s) for s in scores]
    np.testing.assert_allclose(percentiles(scores, reference), by_hand)
    with pytest.raises(ValueError):
        percentiles(scores, [])


def test_iwae_scores_are_the_log_mean_exp_of_the_guide_weights():
    x = torch.rand(30, 4, dtype=torch.float64)
    model, guide = pair(VAE((4,), 2, (8,)).double(), "amortized", (4,), hidden=(8,))
    pyro.set_rng_seed(5)
    scores = anomaly_scores(model, guide, x, num_samples=25)
    pyro.set_rng_seed(5)
    log_w = torch.stack([log_weights(model, guide, x) for _ in range(25)]).detach().numpy()
    assert scores.method == "iwae" and scores.label == "IWAE-25"
    top = log_w.max(0)
    np.testing.assert_allclose(scores.nll, -(top + np.log(np.exp(log_w - top).mean(0))), rtol=1e-8)
    w = np.exp(log_w - top)
    np.testing.assert_allclose(scores.se, w.std(0, ddof=1) / (5 * w.mean(0)), rtol=1e-6)


def test_iwae_approaches_the_exact_nll_within_its_standard_error(rows):
    model, guide = pair(FactorAnalysis(6, 2).double(), "amortized", (6,))
    fit(model, guide, rows, epochs=150, batch_size=100, lr=0.03, progress=False, seed=0)
    exact = anomaly_scores(model, guide, rows[:40])
    approx = iwae_scores(model, guide, rows[:40], num_samples=500)
    assert np.all(approx.se > 0) and np.all(approx.se < 0.2)
    # IWAE-K is a lower bound on log p(x): its NLL lies above the exact one, by little
    gap = approx.nll - exact.nll
    assert gap.mean() > -3 * approx.se.mean() / np.sqrt(40)
    assert np.all(np.abs(gap) < 5 * approx.se + 0.05)


def test_bad_sample_count():
    model, guide = pair(VAE((4,), 2, (8,)), "amortized", (4,), hidden=(8,))
    with pytest.raises(ValueError, match="at least 1"):
        anomaly_scores(model, guide, torch.rand(3, 4), num_samples=0)


def test_hmm_scores_each_step_by_its_one_step_prediction():
    ref = random_reference(3, 2, "full", seed=4)
    x, _ = ref.sample(60, random_state=0)
    model = GaussianHMM(2, 3, "full").double()
    copy_parameters(model, ref)
    model, guide = pair(model, "exact", (60, 2))
    scores = anomaly_scores(model, guide, x[None])
    prefixes = np.array([ref.score(x[: t + 1]) for t in range(60)])  # log p(x_1..x_t) by hmmlearn
    assert scores.label == "exact one-step" and scores.nll.shape == (60,)
    np.testing.assert_allclose(-scores.nll, np.diff(prefixes, prepend=0.0), atol=1e-8)
