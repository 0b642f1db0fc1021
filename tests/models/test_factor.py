"""FA and PPCA against closed forms and scikit-learn."""
import numpy as np
import pytest
import torch
from sklearn.decomposition import PCA
from sklearn.decomposition import FactorAnalysis as SklearnFA

from dlvm.guides import pair
from dlvm.inference import fit
from dlvm.models import FactorAnalysis, Marginalized
from dlvm.models.factor import conditional_moments
from dlvm.guides import ExactGuide


def low_rank_data(n=600, d=12, k=3, heteroscedastic=True, seed=0):
    rng = np.random.default_rng(seed)
    loadings = rng.normal(size=(d, k))
    noise = rng.uniform(0.3, 2.0, d) if heteroscedastic else np.full(d, 0.8)
    return rng.normal(size=(n, k)) @ loadings.T + rng.normal(size=(n, d)) * noise + rng.normal(size=d)


def random_model(d=7, k=3, noise="diagonal"):
    model = FactorAnalysis(d, k, noise).double()
    model.loc = torch.randn(d, dtype=torch.float64)
    model.loadings = torch.randn(d, k, dtype=torch.float64)
    model.noise_variance = torch.rand(d if noise == "diagonal" else (), dtype=torch.float64) + 0.2
    return model


def fit_exact(x, k, noise="diagonal"):
    model = FactorAnalysis(x.shape[1], k, noise).double()
    fit(Marginalized(model), ExactGuide(), x, optimizer="lbfgs", epochs=100, progress=False)
    return model


def test_log_marginal_equals_gaussian_with_model_covariance():
    model = random_model()
    x = torch.randn(20, 7, dtype=torch.float64)
    reference = torch.distributions.MultivariateNormal(model.loc, model.covariance()).log_prob(x)
    torch.testing.assert_close(model.log_marginal(x), reference)


def test_masked_log_marginal_is_the_marginal_of_observed_coordinates():
    model = random_model()
    x = torch.randn(15, 7, dtype=torch.float64)
    mask = torch.rand(15, 7) > 0.3
    mask[:, 0] = True
    cov = model.covariance()
    for i in range(15):
        o = mask[i]
        ref = torch.distributions.MultivariateNormal(model.loc[o], cov[o][:, o]).log_prob(x[i, o])
        torch.testing.assert_close(model.log_marginal(x, mask)[i], ref)
    full = torch.ones_like(mask)
    torch.testing.assert_close(model.log_marginal(x, full), model.log_marginal(x))


def test_marginal_model_site_matches_log_marginal_with_and_without_mask():
    import pyro.poutine as poutine

    model = random_model()
    x = torch.randn(10, 7, dtype=torch.float64)
    mask = torch.rand(10, 7) > 0.3
    mask[:, 0] = True
    for m in (None, mask):
        trace = poutine.trace(Marginalized(model)).get_trace(torch.where(mask, x, 0.0) if m is not None else x, m)
        total = trace.log_prob_sum()
        torch.testing.assert_close(total, model.log_marginal(x, m).sum())


def test_posterior_equals_gaussian_conditioning():
    model = random_model()
    x = torch.randn(5, 7, dtype=torch.float64)
    cov = model.covariance()
    gain = model.loadings.T @ torch.linalg.inv(cov)  # Cov(z, x) Cov(x)^-1
    post = model.posterior(x)
    torch.testing.assert_close(post.mean, (x - model.loc) @ gain.T)
    expected_cov = torch.eye(3, dtype=torch.float64) - gain @ model.loadings
    torch.testing.assert_close(post.covariance_matrix, expected_cov.expand(5, 3, 3))


def test_sample_moments_match_covariance():
    model = random_model(d=4, k=2)
    draws = model.sample(200_000)
    torch.testing.assert_close(draws.mean(0), model.loc, atol=0.05, rtol=0)
    torch.testing.assert_close(torch.cov(draws.T), model.covariance(), atol=0.1, rtol=0.03)


@pytest.mark.parametrize("seed,heteroscedastic", [(0, True), (1, False)])
def test_fa_exact_fit_reaches_sklearn_log_likelihood(seed, heteroscedastic):
    x = low_rank_data(seed=seed, heteroscedastic=heteroscedastic)
    model = fit_exact(x, 3)
    ours = model.log_marginal(torch.as_tensor(x)).mean().item()
    theirs = SklearnFA(3, random_state=0).fit(x).score(x)
    assert ours >= theirs - 0.01


def test_ppca_equals_tipping_bishop_closed_form_and_sklearn():
    x = low_rank_data(seed=2)
    model = fit_exact(x, 3, "isotropic")
    ours = model.log_marginal(torch.as_tensor(x)).mean().item()
    # closed-form MLE (Tipping & Bishop 1999): sigma^2 = mean of the discarded eigenvalues
    centred = x - x.mean(0)
    eig = np.sort(np.linalg.eigvalsh(centred.T @ centred / len(x)))[::-1]
    d, k = x.shape[1], 3
    sigma2 = eig[k:].mean()
    closed = -0.5 * (d * np.log(2 * np.pi) + np.log(eig[:k]).sum() + (d - k) * np.log(sigma2) + d)
    assert ours == pytest.approx(closed, abs=1e-3)
    assert ours == pytest.approx(PCA(3).fit(x).score(x), abs=1e-3)
    assert model.noise_variance.item() == pytest.approx(sigma2, rel=1e-3)


def test_amortized_svi_gets_close_to_the_exact_optimum():
    x = low_rank_data(n=400, d=8, k=2, seed=3)
    optimum = fit_exact(x, 2).log_marginal(torch.as_tensor(x)).mean().item()
    model = FactorAnalysis(8, 2).double()
    trained, guide = pair(model, "amortized", (8,), encoder="linear", guide_covariance="full")
    guide.double()
    fit(trained, guide, x, epochs=400, batch_size=100, lr=0.01, progress=False)
    reached = model.log_marginal(torch.as_tensor(x)).mean().item()
    assert reached >= optimum - 0.05


def test_missing_entries_recover_the_full_data_loadings():
    x = low_rank_data(n=1500, d=10, k=2, seed=4)
    rng = np.random.default_rng(0)
    mask = rng.random(x.shape) > 0.1
    full = fit_exact(x, 2)
    model = FactorAnalysis(10, 2).double()
    fit(Marginalized(model), ExactGuide(), np.where(mask, x, np.nan), mask=mask, optimizer="lbfgs",
        epochs=100, progress=False)
    # loadings are identified up to rotation: compare the covariance they imply
    err = torch.linalg.norm(model.covariance() - full.covariance()) / torch.linalg.norm(full.covariance())
    assert err < 0.1


def test_all_observed_mask_fits_identically_to_no_mask():
    x = low_rank_data(n=200, d=6, k=2, seed=5)
    a, b = FactorAnalysis(6, 2).double(), FactorAnalysis(6, 2).double()
    fit(Marginalized(a), ExactGuide(), x, optimizer="lbfgs", epochs=5, progress=False)
    fit(Marginalized(b), ExactGuide(), x, mask=np.ones_like(x, bool), optimizer="lbfgs", epochs=5, progress=False)
    assert torch.equal(a.loadings, b.loadings) and torch.equal(a.psi, b.psi)


def test_parameter_count():
    assert FactorAnalysis(20, 3).num_parameters() == 20 * 3 + 20 + 20
    assert FactorAnalysis(20, 3, "isotropic").num_parameters() == 20 * 3 + 20 + 1


@pytest.mark.parametrize("k", [0, 5, -1])
def test_bad_latent_dim_is_a_clear_error(k):
    with pytest.raises(ValueError, match="latent dimension"):
        FactorAnalysis(5, k)


def test_conditional_mean_of_missing_entries_is_the_gaussian_conditional():
    model = random_model()
    x = torch.randn(6, 7, dtype=torch.float64)
    mask = torch.rand(6, 7) > 0.4
    mask[0] = False  # a row with nothing observed: the conditional is the marginal
    with torch.no_grad():
        log_density, filled, gain = conditional_moments(x, mask, model.loc, model.loadings, model.psi)
        mu, cov, psi = model.loc.numpy(), model.covariance().numpy(), model.psi.numpy()
    for i in range(6):
        o, m = mask[i].numpy(), ~mask[i].numpy()
        gain_i = cov[np.ix_(m, o)] @ np.linalg.inv(cov[np.ix_(o, o)])
        expected = mu[m] + gain_i @ (x[i, o].numpy() - mu[o])
        np.testing.assert_allclose(filled[i, m].numpy(), expected, rtol=1e-10, atol=1e-12)
        np.testing.assert_array_equal(filled[i, o].numpy(), x[i, o].numpy())
        assert log_density[i].item() == pytest.approx(model.log_marginal(x, mask)[i].item(), rel=1e-12)
        spread = gain[i].numpy() @ gain[i].numpy().T + np.diag(m * psi)
        expected_cov = np.zeros((7, 7))
        expected_cov[np.ix_(m, m)] = cov[np.ix_(m, m)] - gain_i @ cov[np.ix_(o, m)]
        np.testing.assert_allclose(spread, expected_cov, atol=1e-10)
