"""Gaussian mixtures and mixtures of PPCA against scikit-learn and closed forms."""
import numpy as np
import pytest
import torch
from scipy.stats import multivariate_normal
from sklearn.mixture import GaussianMixture as Reference

from dlvm.experiments.data.sets import log_returns, sp500_index
from dlvm.guides import pair
from dlvm.inference import as_observations, evaluate, fit
from dlvm.models import MODELS, FactorAnalysis, GaussianMixture, MixtureOfPPCA, build_model


def sp500_returns():
    return log_returns(sp500_index(), percent=True).to_numpy()[:, None].copy()


def five_clusters(n=1000, seed=0):
    rng = np.random.default_rng(seed)
    centres = np.array([[0, 0], [4, 0], [0, 4], [4, 4], [2, 8]], dtype=float)
    labels = rng.integers(0, 5, n)
    scales = rng.uniform(0.3, 1.0, (5, 2))
    tilt = np.array([[1.0, 0.0], [0.6, 0.8]])
    x = centres[labels] + (rng.standard_normal((n, 2)) * scales[labels]) @ tilt
    return x


def fit_enumerated(x, k, covariance="full"):
    model = GaussianMixture(x.shape[1], k, covariance).double()
    trained, guide = pair(model, "enum", (x.shape[1],))
    fit(trained, guide, x, elbo="traceenum", optimizer="lbfgs", epochs=100, progress=False)
    return model


def set_from_sklearn(model, ref):
    model.weights = torch.tensor(ref.weights_)
    model.gaussians.means = torch.tensor(ref.means_)
    if model.gaussians.full:
        model.gaussians.scale_tril = torch.linalg.cholesky(torch.tensor(ref.covariances_) - 1e-6 * torch.eye(ref.means_.shape[1]))
    else:
        cov = ref.covariances_
        model.gaussians.variances = torch.tensor(cov[:, :, 0] if cov.ndim == 3 else cov)


@pytest.mark.parametrize("covariance", ["full", "diag"])
def test_log_marginal_responsibilities_and_criteria_match_sklearn(covariance):
    x = five_clusters(400)
    ref = Reference(5, covariance_type=covariance, random_state=0).fit(x)
    model = GaussianMixture(2, 5, covariance).double()
    set_from_sklearn(model, ref)
    xt = torch.tensor(x)
    with torch.no_grad():
        np.testing.assert_allclose(model.log_marginal(xt).numpy(), ref.score_samples(x), atol=1e-8)
        resp = model.posterior(xt).numpy()
    # eq. 6.4 by hand: pi_k N(x; mu_k, Sigma_k) / sum_j pi_j N(x; mu_j, Sigma_j)
    cov = model.covariances().detach().numpy()
    joint = np.stack([model.weights[k].item() * multivariate_normal(ref.means_[k], cov[k]).pdf(x) for k in range(5)], -1)
    np.testing.assert_allclose(resp, joint / joint.sum(-1, keepdims=True), atol=1e-10)
    np.testing.assert_allclose(resp, ref.predict_proba(x), atol=1e-8)
    assert model.num_parameters() == ref._n_parameters()
    assert model.bic(xt) == pytest.approx(ref.bic(x), rel=1e-10)
    assert model.aic(xt) == pytest.approx(ref.aic(x), rel=1e-10)


def test_missing_coordinates_are_marginalised():
    torch.manual_seed(1)
    model = GaussianMixture(3, 2, "full").double()
    model.gaussians.means = torch.randn(2, 3, dtype=torch.float64)
    model.gaussians.scale_tril = torch.tril(torch.randn(2, 3, 3, dtype=torch.float64)) + 2 * torch.eye(3)
    x = torch.randn(4, 3, dtype=torch.float64)
    mask = torch.tensor([[True, False, True]] * 4)
    cov = model.covariances().detach()[:, [0, 2]][:, :, [0, 2]]
    means = model.means.detach()[:, [0, 2]]
    w = model.weights.detach()
    expected = torch.logsumexp(torch.stack([
        w[k].log() + torch.distributions.MultivariateNormal(means[k], cov[k]).log_prob(x[:, [0, 2]]) for k in range(2)
    ], -1), -1)
    torch.testing.assert_close(model.log_marginal(x, mask).detach(), expected)


def test_enumerated_fit_reaches_sklearn_on_sp500():
    x = sp500_returns()
    ref = Reference(2, random_state=0, n_init=5).fit(x)
    model = fit_enumerated(x, 2)
    loglik = model.log_marginal(torch.tensor(x)).mean().item()
    assert loglik >= ref.score(x) - 1e-3


def test_enumerated_fit_reaches_sklearn_on_five_clusters():
    x = five_clusters()
    ref = Reference(5, random_state=0, n_init=5).fit(x)
    model = fit_enumerated(x, 5)
    assert model.log_marginal(torch.tensor(x)).mean().item() >= ref.score(x) - 1e-3


def test_amortized_guide_reaches_sklearn_within_001_on_sp500():
    """fit's defaults (measured gap 7.5e-6 nats/row). A step of 0.05 with minibatches, once needed
    from a cold start, now walks off the EM-started optimum (0.021 short): the score-function
    gradient's noise, not the guide, sets how large a step may be."""
    x = sp500_returns()
    ref = Reference(2, random_state=0, n_init=5).fit(x)
    model = GaussianMixture(1, 2).double()
    trained, guide = pair(model, "amortized", (1,), hidden=(32,), baseline="neural")
    guide.double()
    fit(trained, guide, x, elbo="tracegraph", progress=False)
    assert model.log_marginal(torch.tensor(x)).mean().item() >= ref.score(x) - 0.01


@pytest.mark.slow
def test_amortized_guide_reaches_sklearn_within_001_on_five_clusters():
    x = five_clusters()
    ref = Reference(5, random_state=0, n_init=5).fit(x)
    model = GaussianMixture(2, 5).double()
    trained, guide = pair(model, "amortized", (2,), hidden=(32,))
    guide.double()
    fit(trained, guide, x, elbo="tracegraph", lr=0.03, epochs=300, batch_size=200, progress=False)
    assert model.log_marginal(torch.tensor(x)).mean().item() >= ref.score(x) - 0.01


def sklearn_at(model):
    """scikit-learn's GaussianMixture holding the parameters of a full-covariance ``model``."""
    ref = Reference(model.weights.shape[0], covariance_type="full")
    cov = model.covariances().detach().numpy()
    ref.weights_ = model.weights.detach().numpy()
    ref.means_ = model.gaussians.means.detach().numpy()
    ref.covariances_ = cov
    ref.precisions_cholesky_ = np.linalg.inv(np.linalg.cholesky(cov)).transpose(0, 2, 1)
    return ref


def test_enumerated_guide_evaluates_to_the_exact_likelihood():
    x = five_clusters(200)
    model = fit_enumerated(x, 5)
    trained, guide = pair(model, "enum", (2,))
    result = evaluate(trained, guide, x)
    expected = sklearn_at(model).score_samples(x)  # log p(x_i) computed by scikit-learn
    np.testing.assert_allclose(result.elbo.numpy(), expected, rtol=1e-9)
    np.testing.assert_allclose(result.iwae.numpy(), expected, rtol=1e-9)
    np.testing.assert_allclose(result.log_likelihood.numpy(), expected, rtol=1e-9)


def test_sample_follows_the_weights():
    torch.manual_seed(0)
    model = GaussianMixture(2, 3, "diag").double()
    model.weights = torch.tensor([0.2, 0.3, 0.5], dtype=torch.float64)
    model.gaussians.means = 10 * torch.arange(6, dtype=torch.float64).reshape(3, 2)
    x, z = model.sample(20000, return_components=True)
    assert x.shape == (20000, 2)
    np.testing.assert_allclose(np.bincount(z.numpy(), minlength=3) / 20000, [0.2, 0.3, 0.5], atol=0.015)
    np.testing.assert_allclose(x[z == 2].mean(0).numpy(), [40, 50], atol=0.05)


@pytest.mark.parametrize("k", [0, -1, 1.5])
def test_bad_number_of_components(k):
    with pytest.raises(ValueError, match="number of components"):
        GaussianMixture(2, k)


def test_more_components_than_rows():
    model = GaussianMixture(1, 5).double()
    with pytest.raises(ValueError, match="5 components but only 3 rows"):
        model.initialize(torch.zeros(3, 1, dtype=torch.float64))


def test_nan_needs_a_mask():
    x = sp500_returns()[:50]
    x[3, 0] = np.nan
    with pytest.raises(ValueError, match="missing"):
        as_observations(x)


def test_nan_masked_row_is_marginalised():
    x = five_clusters(200)
    x[5, 1] = np.nan
    model = GaussianMixture(2, 3).double()
    trained, guide = pair(model, "enum", (2,))
    fit(trained, guide, x, mask=~np.isnan(x), elbo="traceenum", optimizer="lbfgs", epochs=20, progress=False)
    values = torch.cat([p.detach().flatten() for p in model.parameters()])
    assert torch.isfinite(values).all()


@pytest.mark.parametrize("covariance", ["full", "diag"])
def test_constant_data_gives_finite_parameters(covariance):
    x = np.ones((100, 2))
    model = GaussianMixture(2, 2, covariance).double()
    trained, guide = pair(model, "enum", (2,))
    fit(trained, guide, x, elbo="traceenum", optimizer="lbfgs", epochs=5, progress=False)
    values = torch.cat([p.detach().flatten() for p in model.parameters()])
    assert torch.isfinite(values).all()
    assert torch.isfinite(model.log_marginal(torch.tensor(x))).all()


def test_registry_builds_gmm_and_mppca():
    assert isinstance(build_model("gmm", (3,), {"components": 4, "covariance": "diag"}), GaussianMixture)
    assert isinstance(build_model("mppca", (5,), {"components": 2, "latent_dim": 1}), MixtureOfPPCA)
    assert MODELS["gmm"].guides[0] == "enum"


# ---------------------------------------------------------------------- mixture of PPCA
def two_planes(n, seed):
    """Two clusters in 30 dimensions, each near its own 2-D subspace (differently oriented)."""
    rng = np.random.default_rng(seed)
    basis = [np.linalg.qr(np.random.default_rng(s).standard_normal((30, 2)))[0] * 3 for s in (100, 200)]
    labels = rng.integers(0, 2, n)
    factors = rng.standard_normal((n, 2))
    x = np.stack([basis[k] @ f for k, f in zip(labels, factors)])
    x += np.where(labels[:, None] == 0, 0.0, 2.0) + 0.1 * rng.standard_normal((n, 30))
    return x


def test_mppca_density_is_the_low_rank_gaussian_mixture():
    torch.manual_seed(0)
    model = MixtureOfPPCA(6, 3, latent_dim=2).double()
    model.noise_variance = torch.tensor([[0.5], [1.0], [2.0]], dtype=torch.float64)
    x = torch.randn(10, 6, dtype=torch.float64)
    cov = model.covariances().detach()
    expected = torch.logsumexp(torch.stack([
        model.weights[k].log() + torch.distributions.MultivariateNormal(model.loc[k], cov[k]).log_prob(x)
        for k in range(3)
    ], -1), -1)
    torch.testing.assert_close(model.log_marginal(x).detach(), expected)


def test_mppca_beats_factor_analysis_and_diagonal_gmm_held_out():
    train, test = two_planes(600, 0), torch.tensor(two_planes(300, 1))
    scores = {}
    mppca = MixtureOfPPCA(30, 2, latent_dim=2).double()
    trained, guide = pair(mppca, "enum", (30,))
    fit(trained, guide, train, elbo="traceenum", optimizer="lbfgs", epochs=30, progress=False)
    scores["mppca"] = mppca.log_marginal(test).mean().item()
    fa = FactorAnalysis(30, 2).double()
    trained, guide = pair(fa, "exact", (30,))
    fit(trained, guide, train, optimizer="lbfgs", epochs=30, progress=False)
    scores["fa"] = fa.log_marginal(test).mean().item()
    gmm = fit_enumerated(train, 2, "diag")
    scores["gmm"] = gmm.log_marginal(test).mean().item()
    assert scores["mppca"] > scores["fa"] + 1 and scores["mppca"] > scores["gmm"] + 1, scores


def test_mppca_amortized_categorical_guide_trains():
    train = two_planes(400, 0)
    model = MixtureOfPPCA(30, 2, latent_dim=2).double()
    trained, guide = pair(model, "amortized", (30,), hidden=(16,))
    guide.double()
    result = fit(trained, guide, train, elbo="tracegraph", lr=0.02, epochs=20, batch_size=100, progress=False)
    assert result.history.elbo.iloc[-1] > result.history.elbo.iloc[0]
    ev = evaluate(trained, guide, train, num_samples=5)
    # the bound holds in expectation; a few draws can miss the rare, very negative weights
    assert ev.elbo.mean() <= ev.log_likelihood.mean() + 0.01


def test_selection_rows_bounds_the_observations_of_tables_and_sequences():
    from dlvm.models.components import selection_rows
    table = torch.randn(500, 3)
    rows, mask = selection_rows(table, table > 0, limit=100)
    assert rows.shape == (100, 3) and mask.shape == (100, 3)
    assert all(any(torch.equal(r, t) for t in table) for r in rows[:5])  # whole rows of the table
    long = torch.arange(1000.0).reshape(1, 1000, 1)
    window, none = selection_rows(long, None, limit=100)
    assert window.shape == (1, 100, 1) and none is None
    assert torch.equal(window.diff(dim=1), torch.ones(1, 99, 1))  # contiguous steps
    many = torch.randn(50, 10, 2)
    assert selection_rows(many, None, limit=100)[0].shape == (10, 10, 2)
    assert selection_rows(many, None, limit=10_000)[0] is many
