"""Student-t factor analysis against independent references: scipy's multivariate t, Bayes' rule
written out by hand, the classic (u, z) AECM written in numpy, and Factor Analysis on fat tails."""
import json
import math

import numpy as np
import pytest
import torch
from scipy.stats import gamma, multivariate_normal, multivariate_t

from dlvm.experiments.cli import main
from dlvm.guides import ExactGuide, pair
from dlvm.inference import fit
from dlvm.inference.em import fit_em
from dlvm.models import FactorAnalysis, Marginalized, StudentTFactorAnalysis

D, K, NU = 5, 2, 4.0


def t_rows(n, seed=0, dof=NU):
    """Rows of a known Student-t factor model: (x (n, D), mu, W, psi)."""
    rng = np.random.default_rng(seed)
    loc = rng.normal(size=D)
    loadings = rng.normal(size=(D, K))
    psi = rng.uniform(0.2, 0.6, size=D)
    u = rng.gamma(dof / 2, 2 / dof, size=n)
    z = rng.normal(size=(n, K)) / np.sqrt(u)[:, None]
    noise = rng.normal(size=(n, D)) * np.sqrt(psi / u[:, None])
    return loc + z @ loadings.T + noise, loc, loadings, psi


def model_at(loc, loadings, psi, dof=NU):
    model = StudentTFactorAnalysis(D, K, dof).double()
    model.loc, model.loadings, model.noise_variance = (torch.as_tensor(v, dtype=torch.float64)
                                                       for v in (loc, loadings, psi))
    return model


@torch.no_grad()
def mean_log_likelihood(model, x) -> float:
    return float(model.log_marginal(torch.as_tensor(x)).mean())


def test_log_marginal_is_scipys_multivariate_t_also_on_observed_coordinates():
    x, loc, loadings, psi = t_rows(50)
    model = model_at(loc, loadings, psi)
    sigma = loadings @ loadings.T + np.diag(psi)
    expected = multivariate_t(loc=loc, shape=sigma, df=NU).logpdf(x)
    np.testing.assert_allclose(model.log_marginal(torch.as_tensor(x)).detach().numpy(), expected, rtol=0, atol=1e-10)
    # a missing coordinate is marginalised out: the t of the observed block, same degrees of freedom
    mask = np.ones_like(x, dtype=bool)
    mask[:, 1] = False
    kept = [0, 2, 3, 4]
    expected = multivariate_t(loc=loc[kept], shape=sigma[np.ix_(kept, kept)], df=NU).logpdf(x[:, kept])
    got = model.log_marginal(torch.as_tensor(x), torch.as_tensor(mask)).detach().numpy()
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-10)


def test_posterior_satisfies_bayes_rule_on_the_joint():
    """log p(u | x) + log p(z | u, x) + log p(x) = log p(u) + log p(z | u) + log p(x | z, u) at any
    (u, z), with p(z | u, x) = N(m, M^-1 / u) written here by hand."""
    x, loc, loadings, psi = t_rows(4, seed=1)
    model = model_at(loc, loadings, psi)
    xt = torch.as_tensor(x)
    with torch.no_grad():
        post_u, log_px = model.scale_posterior(xt), model.log_marginal(xt).numpy()
    precision = np.eye(K) + loadings.T @ (loadings / psi[:, None])
    cov = np.linalg.inv(precision)
    rng = np.random.default_rng(2)
    for i in range(len(x)):
        m = cov @ loadings.T @ ((x[i] - loc) / psi)
        u, z = rng.gamma(2.0, 0.5), rng.normal(size=K)
        left = (float(post_u.log_prob(torch.tensor(u, dtype=torch.float64))[i].detach())
                + multivariate_normal(m, cov / u).logpdf(z) + log_px[i])
        right = (gamma(NU / 2, scale=2 / NU).logpdf(u) + multivariate_normal(np.zeros(K), np.eye(K) / u).logpdf(z)
                 + multivariate_normal(loc + loadings @ z, np.diag(psi / u)).logpdf(x[i]))
        assert left == pytest.approx(right, abs=1e-9)
        # z | x, u integrated over the Gamma p(u | x): the t with nu + D degrees of freedom and
        # scale matrix (nu + delta)/(nu + D) M^-1 (scipy's density; delta from the full Sigma)
        delta = (x[i] - loc) @ np.linalg.solve(loadings @ loadings.T + np.diag(psi), x[i] - loc)
        reference = multivariate_t(loc=m, shape=(NU + delta) / (NU + D) * cov, df=NU + D)
        with torch.no_grad():
            post_z = model.posterior(xt[i:i + 1])
            assert float(post_z.log_prob(torch.as_tensor(z))[0]) == pytest.approx(reference.logpdf(z), abs=1e-10)
        np.testing.assert_allclose(post_z.mean[0].numpy(), m, atol=1e-10)


def numpy_aecm(x, loc, loadings, psi, dof, iterations):
    """The (u, z) AECM of t factor analysis (McLachlan, Bean and Ben-Tahar, 2007) written out:
    weights w = (nu + D)/(nu + delta), mu their mean, then one FA EM step on the weighted scatter."""
    n = len(x)
    for _ in range(iterations):
        sigma = loadings @ loadings.T + np.diag(psi)
        resid = x - loc
        delta = np.einsum("nd,nd->n", resid, np.linalg.solve(sigma, resid.T).T)
        w = (dof + D) / (dof + delta)
        loc = (w[:, None] * x).sum(0) / w.sum()
        resid = x - loc
        scatter = (w[:, None] * resid).T @ resid / n
        beta = np.linalg.solve(sigma, loadings).T  # W^T Sigma^-1
        loadings = scatter @ beta.T @ np.linalg.inv(np.eye(K) - beta @ loadings + beta @ scatter @ beta.T)
        psi = np.diag(scatter - loadings @ beta @ scatter)
    return loc, loadings, psi


def test_em_reaches_the_optimum_of_an_independent_numpy_aecm():
    x, *_ = t_rows(400, seed=3)
    model = StudentTFactorAnalysis(D, K, NU).double()
    result = fit_em(model, x, tol=1e-12, max_iter=2000)
    assert result.converged
    values = result.history["elbo"].to_numpy()
    assert (np.diff(values) >= -1e-10).all()  # EM never lowers the log-likelihood
    start = model_at(np.zeros(D), np.zeros((D, K)), np.ones(D))
    start.initialize(torch.as_tensor(x))
    loc, loadings, psi = numpy_aecm(x, *(p.detach().numpy() for p in start.globals()), NU, 3000)
    sigma = loadings @ loadings.T + np.diag(psi)
    reference = multivariate_t(loc=loc, shape=sigma, df=NU).logpdf(x).mean()
    ours = mean_log_likelihood(model, x)
    assert ours == pytest.approx(reference, abs=1e-6)
    np.testing.assert_allclose(model.covariance().detach().numpy(), sigma, atol=2e-3)
    np.testing.assert_allclose(model.loc.detach().numpy(), loc, atol=2e-3)


def test_lbfgs_on_the_exact_marginal_agrees_with_em():
    x, *_ = t_rows(300, seed=4)
    em_model = StudentTFactorAnalysis(D, K, NU).double()
    fit_em(em_model, x, tol=1e-12, max_iter=2000)
    collapsed = Marginalized(StudentTFactorAnalysis(D, K, NU).double())
    fit(collapsed, ExactGuide().double(), x, optimizer="lbfgs", epochs=300, progress=False)
    assert mean_log_likelihood(collapsed, x) == pytest.approx(mean_log_likelihood(em_model, x), abs=1e-5)


def test_fat_tailed_returns_are_fitted_better_than_by_factor_analysis():
    x, *_ = t_rows(2000, seed=5, dof=3.0)
    train, test = torch.as_tensor(x[:1000]), torch.as_tensor(x[1000:])
    t_model = StudentTFactorAnalysis(D, K, 3.0).double()
    fit_em(t_model, train, tol=1e-10)
    fa = FactorAnalysis(D, K).double()
    fit_em(fa, train, tol=1e-10)
    gain = mean_log_likelihood(t_model, test) - mean_log_likelihood(fa, test)
    assert gain > 0.1, gain  # nats per row on held-out rows


def test_a_guide_that_leaves_a_local_latent_to_its_prior_is_refused():
    class StockGuideForT(StudentTFactorAnalysis):
        name = "t-with-the-normal-guide"
        latent_kind = "continuous"  # gets the Normal guide, which samples z but not u

    with pytest.raises(ValueError, match="does not cover StockGuideForT's local latent 'u'"):
        pair(StockGuideForT(D, K).double(), "amortized", (D,))
    trained, guide = pair(StudentTFactorAnalysis(D, K).double(), "amortized", (D,))
    assert guide.covers == ("u", "z")


def test_cli_fits_it_by_em_and_refuses_options_it_does_not_declare(tmp_path, capsys):
    x, *_ = t_rows(200, seed=6)
    path = tmp_path / "returns.npy"
    np.save(path, x)
    assert main(["fit", "tfa", "--data", str(path), "--out", str(tmp_path / "run"), "--latent-dim", "2",
                 "--dof", "4", "--quiet"]) == 0
    reference = StudentTFactorAnalysis(D, K, NU).double()
    fit_em(reference, x)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["optimizer"] == "em" and metrics["guide"] == "exact"
    assert metrics["log_likelihood"] == pytest.approx(mean_log_likelihood(reference, x), abs=1e-6)
    capsys.readouterr()
    assert main(["fit", "tfa", "--data", str(path), "--out", str(tmp_path / "bad"), "--components", "3"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "tfa has no option --components" in error
    assert main(["fit", "tfa", "--data", str(path), "--out", str(tmp_path / "bad"), "--dof", "0"]) == 2
    assert "--dof must be a finite number above 0" in capsys.readouterr().err
    assert math.isfinite(metrics["elbo"])
