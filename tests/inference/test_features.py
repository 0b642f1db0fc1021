"""Latent features against closed forms: the FA posterior by hand, mixture responsibilities from
scikit-learn, an amortized guide's own q(z|x), and the refusal of per-time-step posteriors."""
import numpy as np
import pytest
import torch
from sklearn.mixture import GaussianMixture as SkGaussianMixture

from dlvm.guides import pair
from dlvm.inference import fit
from dlvm.inference.features import encode
from dlvm.models import VAE, FactorAnalysis, GaussianHMM, GaussianMixture


def test_fa_means_and_sds_are_the_closed_form_posterior():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(150, 2)) @ rng.normal(size=(2, 5)) + rng.normal(size=(150, 5))
    model, guide = pair(FactorAnalysis(5, 2).double(), "exact", (5,))
    fit(model, guide, x, optimizer="lbfgs", epochs=20, progress=False)
    mu, lam, psi = (t.detach().numpy() for t in (model.loc, model.loadings, model.psi))
    m = np.eye(2) + lam.T @ np.diag(1 / psi) @ lam  # posterior precision
    mean = np.linalg.solve(m, lam.T @ np.diag(1 / psi) @ (x - mu).T).T
    found = encode(model, guide, x)
    assert found.method == "exact posterior"
    np.testing.assert_allclose(found.mean, mean, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(found.sd, np.tile(np.sqrt(np.diag(np.linalg.inv(m))), (150, 1)), rtol=1e-8)


def test_mixture_means_are_sklearn_responsibilities():
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.normal(-2, 1, size=(100, 2)), rng.normal(2, 0.5, size=(100, 2))])
    ref = SkGaussianMixture(2, random_state=0).fit(x)
    model = GaussianMixture(2, 2).double()
    model.weights = torch.as_tensor(ref.weights_)
    model.gaussians.means = torch.as_tensor(ref.means_)
    model.gaussians.scale_tril = torch.as_tensor(np.linalg.cholesky(ref.covariances_))
    model, guide = pair(model, "exact", (2,))
    found = encode(model, guide, x)
    p = ref.predict_proba(x)
    np.testing.assert_allclose(found.mean, p, atol=1e-8)
    np.testing.assert_allclose(found.sd, np.sqrt(p * (1 - p)), atol=1e-6)


def test_amortized_guide_gives_its_q_moments():
    x = torch.rand(20, 4)
    model, guide = pair(VAE((4,), 3, (8,)), "amortized", (4,), hidden=(8,))
    found = encode(model, guide, x)
    q = guide.distribution(x)
    assert found.method == "amortized q(z|x)" and found.mean.shape == (20, 3)
    np.testing.assert_allclose(found.mean, q.mean.detach().numpy(), rtol=1e-6)
    np.testing.assert_allclose(found.sd, q.stddev.detach().numpy(), rtol=1e-6)


def test_monte_carlo_moments_of_a_plain_guide():
    model, guide = pair(VAE((4,), 3, (8,)), "amortized", (4,), hidden=(8,))
    x = torch.rand(6, 4)

    def plain(x, mask=None, size=None):  # the same q(z|x), without a distribution method
        return guide(x, mask, size)

    found = encode(model, plain, x, num_samples=4000)
    q = guide.distribution(x)
    assert found.method.startswith("Monte Carlo")
    np.testing.assert_allclose(found.mean, q.mean.detach().numpy(), atol=4 * q.stddev.max().item() / 60)
    np.testing.assert_allclose(found.sd, q.stddev.detach().numpy(), rtol=0.1)


def test_per_time_step_posterior_is_refused():
    model, guide = pair(GaussianHMM(1, 2), "exact", (30, 1))
    with pytest.raises(ValueError, match="per time step"):
        encode(model, guide, torch.randn(1, 30, 1))
