"""ArviZ conversion, NUTS convergence, LOO and PSIS k-hat."""
import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.nn import PyroSample

from dlvm.guides import pair
from dlvm.inference import arviz_adapter, fit
from dlvm.inference.diagnostics import guide_draws, psis_khat, run_nuts, to_arviz
from dlvm.models import FactorAnalysis, LatentVariableModel, Marginalized

from .arviz1_env import run_adapter


def fa_data(n=40, seed=0):
    torch.manual_seed(seed)
    truth = FactorAnalysis(4, 1).double()
    with torch.no_grad():
        truth.loadings = torch.tensor([[1.0], [0.8], [0.6], [0.0]], dtype=torch.float64)
        truth.noise_variance = torch.full((4,), 0.3, dtype=torch.float64)
    return truth, truth.sample(n)


def test_to_arviz_from_an_svi_fit_has_the_groups_dims_and_coords():
    _, x = fa_data(20)
    model = FactorAnalysis(4, 1).double()
    model.initialize(x)
    trained, guide = pair(model, "amortized", (4,), encoder="linear")
    guide.double()
    data = to_arviz(trained, x, guide=guide, num_draws=50, local_rows=[0, 3])
    assert set(arviz_adapter.group_names(data)) == {
        "posterior", "posterior_predictive", "log_likelihood", "observed_data"}
    z = data.posterior["z"]
    assert z.dims == ("chain", "draw", "z_row", "z_dim_0") and z.shape == (1, 50, 2, 1)
    assert list(data.posterior["z_row"].values) == [0, 3]
    assert data.log_likelihood["x"].dims == ("chain", "draw", "data") and data.log_likelihood["x"].shape == (1, 50, 20)
    assert data.posterior_predictive["x"].shape == (1, 50, 20, 4)
    np.testing.assert_allclose(data.observed_data["x"].values, x.numpy())
    # ML globals: the exact log p(x_i) is the pointwise log-likelihood of every draw
    np.testing.assert_allclose(data.log_likelihood["x"].values[0, 0], model.log_marginal(x).detach().numpy())
    assert np.isfinite(arviz_adapter.loo(data)["elpd"])


class NormalMean(LatentVariableModel):
    """mu ~ N(0, 1), x_i ~ N(mu, 1): a global latent only."""

    def __init__(self):
        super().__init__()
        self.register_buffer("one", torch.ones((), dtype=torch.float64))
        self.mu = PyroSample(lambda s: dist.Normal(0.0 * s.one, s.one))

    def model(self, x, mask=None, size=None):
        mu = self.mu
        with self.data_plate(x, size):
            return pyro.sample("x", dist.Normal(mu, 1.0).expand([x.shape[1]]).to_event(1), obs=x)


@pytest.mark.slow  # NUTS, two chains
def test_nuts_on_a_simple_model_converges_and_loo_is_finite():
    x = torch.randn(15, 1, dtype=torch.float64) + 1.0
    model = NormalMean()
    result = run_nuts(model, x, num_samples=250, warmup=150, chains=2)
    data = to_arviz(model, x, mcmc=result)
    assert "sample_stats" in arviz_adapter.group_names(data)
    table = arviz_adapter.summary(data, mcmc=True)
    assert (table.r_hat < 1.01).all() and (table.ess_bulk > 100).all()
    # conjugate posterior: N(sum x / (n + 1), 1 / (n + 1))
    n = x.shape[0]
    assert abs(table.loc["mu", "mean"] - float(x.sum()) / (n + 1)) < 4 * (1 / (n + 1)) ** 0.5 / 10
    result = arviz_adapter.loo(data)
    assert np.isfinite(result["elpd"]) and sum(result["k_counts"].values()) == n


def test_psis_khat_separates_a_good_guide_from_a_poor_one():
    truth, x = fa_data(30)
    model = FactorAnalysis(4, 2).double()
    trained, guide = pair(model, "amortized", (4,), encoder="linear", guide_covariance="full")
    guide.double()
    fit(trained, guide, x, epochs=600, lr=0.05, lr_decay=0.992, num_particles=2, progress=False)
    good = psis_khat(trained, guide, x, num_draws=200)
    assert np.mean(good < 0.5) >= 0.8
    with torch.no_grad():  # the same means, a tiny fixed scale
        guide.scale_head.weight.zero_()
        guide.scale_head.bias.fill_(-4.0)
    poor = psis_khat(trained, guide, x, num_draws=1000)
    assert np.mean(poor > 0.7) >= 0.8


@pytest.mark.slow
def test_nuts_and_svi_agree_on_the_bayesian_loadings_norm():
    _, x = fa_data(40)
    nuts_model = Marginalized(FactorAnalysis(4, 1, bayesian=True).double())
    result = run_nuts(nuts_model, x, num_samples=150, warmup=150, chains=1)
    (name,) = [n for n in result.samples if n.endswith("loadings")]
    nuts_norm = result.samples[name].flatten(2).norm(dim=-1)
    trained, guide = pair(FactorAnalysis(4, 1, bayesian=True).double(), "exact", (4,))
    fit(trained, guide, x, epochs=800, lr=0.02, progress=False)
    draws = guide_draws(guide, x, None, 400)
    (name,) = [n for n in draws if n.endswith("loadings")]
    svi_norm = draws[name].flatten(1).norm(dim=-1)
    assert abs(float(nuts_norm.mean() - svi_norm.mean())) < 2 * float(nuts_norm.std())


def test_the_arviz_adapter_works_with_arviz_1():
    """The adapter's self-check under Python 3.12 + arviz>=1 (+ numpy only), in a cached venv."""
    assert "arviz adapter ok (arviz 1." in run_adapter()


def test_the_arviz_adapter_self_check_here():
    assert arviz_adapter.self_check().startswith("arviz adapter ok")
