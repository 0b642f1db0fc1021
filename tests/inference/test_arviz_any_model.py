"""to_arviz on users' own Pyro models: any site names and plates, covariates, several observed
sites, any guide, pyro.infer.MCMC objects; numbers checked against hand computations."""
import math
import warnings
from pathlib import Path

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import MCMC, NUTS, SVI, Trace_ELBO
from pyro.infer.autoguide import AutoDiagonalNormal, AutoMultivariateNormal, AutoNormal
from pyro.nn import PyroModule, PyroSample
from torch import nn
from torch.distributions import constraints

from dlvm.guides import pair
from dlvm.inference import arviz_adapter, fit
from dlvm.inference.diagnostics import posterior_groups, to_arviz
from dlvm.models import FactorAnalysis, GaussianHMM

from .arviz1_env import run_adapter

az = arviz_adapter.az
Y = torch.tensor([28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0])
SIGMA = torch.tensor([15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0])
GROUPS = {"posterior", "posterior_predictive", "log_likelihood", "observed_data"}


@pytest.fixture
def plain_pyro():
    """Pyro's default global parameter store, as a plain Pyro user has it (importing dlvm's models
    turns module-local parameters on, where plain SVI fails on AutoDiagonalNormal's parameters)."""
    with pyro.settings.context(module_local_params=False):
        yield


def eight_schools(sigma, y=None):
    """The non-centred eight-schools model; the standard errors ``sigma`` are a covariate."""
    mu = pyro.sample("mu", dist.Normal(0.0, 5.0))
    tau = pyro.sample("tau", dist.HalfCauchy(5.0))
    with pyro.plate("schools", sigma.shape[0]):
        eta = pyro.sample("eta", dist.Normal(0.0, 1.0))
        theta = pyro.deterministic("theta", mu + tau * eta)
        return pyro.sample("obs", dist.Normal(theta, sigma), obs=y)


def svi_fit(model, guide, *args, steps=300, lr=0.05, **kwargs):
    pyro.clear_param_store()
    svi = SVI(model, guide, pyro.optim.Adam({"lr": lr}), Trace_ELBO())
    for _ in range(steps):
        svi.step(*args, **kwargs)
    return guide


def values(data, group, name) -> np.ndarray:
    return np.asarray(data[group][name].values)


def quietly(function, *args, **kwargs):
    """An ArviZ call with its warnings (small samples, one chain) silenced."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return function(*args, **kwargs)


def check_eight_schools(data, draws):
    """Groups, dims, and the log-likelihood and predictive against hand computations."""
    assert GROUPS <= set(arviz_adapter.group_names(data))
    assert data.posterior["eta"].dims == ("chain", "draw", "schools")
    assert data.posterior["theta"].dims == ("chain", "draw", "schools")
    assert data.posterior["mu"].dims == ("chain", "draw") and data.posterior["mu"].size == draws
    mu, tau, eta, theta = (values(data, "posterior", n) for n in ("mu", "tau", "eta", "theta"))
    np.testing.assert_allclose(theta, mu[..., None] + tau[..., None] * eta, rtol=1e-5, atol=1e-5)
    by_hand = dist.Normal(torch.as_tensor(theta), SIGMA.double()).log_prob(Y.double()).numpy()
    assert data.log_likelihood["obs"].dims == ("chain", "draw", "schools")
    np.testing.assert_allclose(values(data, "log_likelihood", "obs"), by_hand, rtol=1e-5)
    np.testing.assert_array_equal(values(data, "observed_data", "obs"), Y.numpy())
    residual = (values(data, "posterior_predictive", "obs") - theta) / SIGMA.numpy()
    assert abs(residual.mean()) < 5 / math.sqrt(residual.size) and abs(residual.std() - 1) < 0.1


@pytest.mark.usefixtures("plain_pyro")
@pytest.mark.parametrize("family", [AutoNormal, AutoDiagonalNormal, AutoMultivariateNormal])
def test_eight_schools_fitted_by_plain_svi(family, tmp_path):
    guide = svi_fit(eight_schools, family(eight_schools), SIGMA, Y, steps=200)
    data = to_arviz(eight_schools, guide=guide, args=(SIGMA,), kwargs={"y": Y}, num_draws=200)
    check_eight_schools(data, 200)
    table = quietly(az.summary, data, kind="stats")
    assert len(table) == 2 + 8 + 8
    assert abs(table.loc["mu", "mean"] - values(data, "posterior", "mu").mean()) < 1e-2
    result = arviz_adapter.loo(data)
    log_lik = values(data, "log_likelihood", "obs").reshape(-1, 8)
    lppd = float(np.sum(np.log(np.mean(np.exp(log_lik), axis=0))))
    assert abs(lppd - result["p_loo"] - result["elpd"]) < 1e-6  # elpd_loo = lppd - p_loo
    assert result["pareto_k"].shape == (8,) and sum(result["k_counts"].values()) == 8
    assert result["k_threshold"] == pytest.approx(1 - 1 / math.log10(200))
    assert quietly(az.loo, data).pareto_k.shape == (8,)
    assert arviz_adapter.plot_trace(data, tmp_path / "trace.png").stat().st_size > 0


@pytest.mark.slow
@pytest.mark.usefixtures("plain_pyro")
def test_a_users_own_mcmc_object_converts_with_divergences(tmp_path):
    mcmc = MCMC(NUTS(eight_schools), num_samples=200, warmup_steps=200, num_chains=1, disable_progbar=True)
    mcmc.run(SIGMA, Y)
    data = to_arviz(eight_schools, mcmc=mcmc, args=(SIGMA, Y))
    check_eight_schools(data, 200)
    diverging = values(data, "sample_stats", "diverging")
    assert diverging.shape == (1, 200) and diverging.dtype == bool
    assert diverging.sum() == len(mcmc.diagnostics()["divergences"]["chain 0"])
    np.testing.assert_allclose(values(data, "posterior", "mu")[0], mcmc.get_samples()["mu"].numpy())
    # the eight-schools posterior mean of mu is 4.4 (sd 3.3)
    assert abs(values(data, "posterior", "mu").mean() - 4.4) < 1.5
    svi = to_arviz(eight_schools, guide=svi_fit(eight_schools, AutoNormal(eight_schools), SIGMA, Y, steps=200),
                   args=(SIGMA, Y), num_draws=200)
    table = arviz_adapter.compare({"nuts": data, "svi": svi})
    assert set(table.index) == {"nuts", "svi"} and table["elpd_diff"].max() == 0.0
    assert quietly(az.compare, {"nuts": data, "svi": svi}).shape[0] == 2
    assert arviz_adapter.plot_trace(data, tmp_path / "trace.png").stat().st_size > 0


LAB = torch.tensor([0.3, 1.1, 0.4, -0.2, 0.9])
FIELD = torch.tensor([1.2, 0.8, 1.5, 0.9, 1.1, 1.6, 0.7])


def two_instruments(lab, field):
    """One level seen by two instruments: lab ~ N(level, 1), field ~ N(2 level, 0.5)."""
    level = pyro.sample("level", dist.Normal(0.0, 1.0))
    with pyro.plate("lab_runs", lab.shape[0]):
        pyro.sample("lab_reading", dist.Normal(level, 1.0), obs=lab)
    with pyro.plate("field_runs", field.shape[0]):
        pyro.sample("field_reading", dist.Normal(2.0 * level, 0.5), obs=field)


def level_guide(lab, field):
    """A hand-written guide whose parameters live in Pyro's global parameter store."""
    loc = pyro.param("level_loc", torch.tensor(0.0))
    scale = pyro.param("level_scale", torch.tensor(1.0), constraint=constraints.positive)
    pyro.sample("level", dist.Normal(loc, scale))


def conjugate_level():
    """The exact posterior N(mean, sd^2) of the level."""
    precision = 1.0 + LAB.numel() + FIELD.numel() * 4.0 / 0.25
    mean = (float(LAB.sum()) + 2.0 * float(FIELD.sum()) / 0.25) / precision
    return mean, precision ** -0.5


@pytest.mark.usefixtures("plain_pyro")
def test_two_observed_sites_of_other_names_and_a_global_param_store_guide():
    guide = svi_fit(two_instruments, level_guide, LAB, FIELD, steps=700, lr=0.03)
    data = to_arviz(two_instruments, guide=guide, args=(LAB, FIELD), num_draws=1000)
    level = values(data, "posterior", "level")
    loc, scale = (float(pyro.param(n).detach()) for n in ("level_loc", "level_scale"))
    assert abs(level.mean() - loc) < 4 * scale / math.sqrt(1000) and abs(level.std() / scale - 1) < 0.1
    mean, sd = conjugate_level()  # the guide's family holds the exact posterior
    assert abs(loc - mean) < 0.3 * sd and abs(scale / sd - 1) < 0.3
    assert data.log_likelihood["lab_reading"].dims == ("chain", "draw", "lab_runs")
    assert data.log_likelihood["field_reading"].dims == ("chain", "draw", "field_runs")
    by_hand = dist.Normal(2.0 * torch.as_tensor(level)[..., None], 0.5).log_prob(FIELD.double()).numpy()
    np.testing.assert_allclose(values(data, "log_likelihood", "field_reading"), by_hand, rtol=1e-5)
    assert values(data, "posterior_predictive", "lab_reading").shape == (1, 1000, 5)
    for name, size in (("lab_reading", 5), ("field_reading", 7)):
        assert arviz_adapter.loo(data, var_name=name)["pareto_k"].shape == (size,)
    with pytest.raises(ValueError, match="var_name"):
        arviz_adapter.loo(data)


def with_a_learned_scale(y):
    """A model with a point-estimated parameter in Pyro's global parameter store."""
    scale = pyro.param("reading_scale", torch.tensor(1.0), constraint=constraints.positive)
    level = pyro.sample("level", dist.Normal(0.0, 10.0))
    with pyro.plate("readings", y.shape[0]):
        pyro.sample("reading", dist.Normal(level, scale), obs=y)


@pytest.mark.usefixtures("plain_pyro")
def test_a_model_with_pyro_param_uses_the_fitted_parameter():
    guide = svi_fit(with_a_learned_scale, AutoDiagonalNormal(with_a_learned_scale), FIELD, steps=300)
    data = to_arviz(with_a_learned_scale, guide=guide, args=(FIELD,), num_draws=100)
    scale = pyro.param("reading_scale").detach().double()
    assert abs(float(scale) - 1.0) > 0.1  # moved away from its start
    level = torch.as_tensor(values(data, "posterior", "level"))[..., None]
    by_hand = dist.Normal(level, scale).log_prob(FIELD.double()).numpy()
    np.testing.assert_allclose(values(data, "log_likelihood", "reading"), by_hand, rtol=1e-5, atol=1e-6)


@pytest.fixture(scope="module")
def conjugate_nuts():
    pyro.set_rng_seed(2)
    mcmc = MCMC(NUTS(two_instruments), num_samples=400, warmup_steps=200, disable_progbar=True)
    mcmc.run(LAB, FIELD)
    return mcmc


def test_nuts_posterior_mean_of_a_conjugate_model_is_the_closed_form(conjugate_nuts):
    data = to_arviz(two_instruments, mcmc=conjugate_nuts, args=(LAB, FIELD))
    mean, sd = conjugate_level()
    level = values(data, "posterior", "level")
    assert abs(level.mean() - mean) < 5 * sd / math.sqrt(100)  # ESS of 400 NUTS draws >= 100
    assert set(data.observed_data.data_vars) == {"lab_reading", "field_reading"}


class Regression(PyroModule):
    """Bayesian linear regression of ``target`` on ``covariates`` with a HalfNormal noise sd."""

    def __init__(self, features):
        super().__init__()
        self.linear = PyroModule[nn.Linear](features, 1)
        self.linear.weight = PyroSample(dist.Normal(0.0, 2.0).expand([1, features]).to_event(2))
        self.linear.bias = PyroSample(dist.Normal(0.0, 5.0).expand([1]).to_event(1))

    def forward(self, covariates, target=None):
        noise = pyro.sample("noise", dist.HalfNormal(1.0))
        mean = self.linear(covariates).squeeze(-1)
        with pyro.plate("data", covariates.shape[0]):
            return pyro.sample("target", dist.Normal(mean, noise), obs=target)


@pytest.mark.usefixtures("plain_pyro")
def test_bayesian_regression_with_covariates():
    torch.manual_seed(0)
    covariates = torch.randn(60, 3)
    target = covariates @ torch.tensor([1.0, -2.0, 0.5]) + 0.3 + 0.5 * torch.randn(60)
    model = Regression(3)
    guide = svi_fit(model, AutoMultivariateNormal(model), covariates, target, steps=500, lr=0.05)
    data = to_arviz(model, guide=guide, args=(covariates,), kwargs={"target": target}, num_draws=300)
    assert data.posterior["weight"].dims == ("chain", "draw", "weight_dim_0", "weight_dim_1")
    assert data.posterior["bias"].dims == ("chain", "draw", "bias_dim_0")
    assert data.log_likelihood["target"].dims == ("chain", "draw", "data")
    weight, bias, noise = (torch.as_tensor(values(data, "posterior", n)[0]) for n in ("weight", "bias", "noise"))
    mean = torch.einsum("nf,sof->sn", covariates.double(), weight) + bias
    by_hand = dist.Normal(mean, noise[:, None]).log_prob(target.double()).numpy()
    np.testing.assert_allclose(values(data, "log_likelihood", "target")[0], by_hand, rtol=1e-5, atol=1e-5)
    design = torch.cat([covariates, torch.ones(60, 1)], 1).double()
    least_squares = torch.linalg.lstsq(design, target.double()[:, None]).solution.squeeze()
    np.testing.assert_allclose(weight.mean(0).squeeze(0), least_squares[:3], atol=0.15)
    assert np.isfinite(arviz_adapter.loo(data)["elpd"])


def test_a_bayesian_dlvm_model_still_converts_with_its_exact_likelihood():
    torch.manual_seed(0)
    z = torch.randn(30, 1, dtype=torch.float64)
    x = z @ torch.tensor([[1.0, 0.5, 0.0, 0.2]], dtype=torch.float64) + torch.randn(30, 4, dtype=torch.float64)
    trained, guide = pair(FactorAnalysis(4, 1, bayesian=True).double(), "exact", (4,))
    fit(trained, guide, x, epochs=150, lr=0.02, progress=False)
    data = to_arviz(trained, x, guide=guide, num_draws=100)
    assert {"loc", "loadings", "noise_variance"} <= set(data.posterior.data_vars)
    assert data.log_likelihood["x"].dims == ("chain", "draw", "data")
    loc, loadings, psi = (torch.as_tensor(values(data, "posterior", n)[0, 7])
                          for n in ("loc", "loadings", "noise_variance"))
    by_hand = dist.LowRankMultivariateNormal(loc, loadings, psi.expand(4)).log_prob(x)
    np.testing.assert_allclose(values(data, "log_likelihood", "x")[0, 7], by_hand.numpy(), rtol=1e-6)
    assert np.isfinite(arviz_adapter.loo(data)["elpd"])


def test_a_dlvm_hmm_observing_its_rows_through_pyro_factor_converts():
    x = torch.randn(6, 20, 1, dtype=torch.float64)
    trained, guide = pair(GaussianHMM(1, 2).double(), "exact", (20, 1))
    data = to_arviz(trained, x, guide=guide, num_draws=20)
    assert data.log_likelihood["x"].dims == ("chain", "draw", "data")
    np.testing.assert_allclose(values(data, "log_likelihood", "x")[0, 3], trained.log_marginal(x).detach().numpy())
    assert data.observed_data["x"].dims == ("data", "x_dim_0", "x_dim_1")
    assert "posterior_predictive" not in arviz_adapter.group_names(data)  # a pyro.factor cannot be replicated


def unobserved(scale):
    pyro.sample("mu", dist.Normal(0.0, scale))


def minibatched(y):
    mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
    with pyro.plate("data", y.shape[0], subsample_size=4) as rows:
        pyro.sample("y", dist.Normal(mu, 1.0), obs=y[rows])


def unexpanded(y):
    mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
    pyro.sample("y", dist.Normal(mu, 1.0), obs=y)


def nothing(*args, **kwargs):
    pass


def mu_guide(*args, **kwargs):
    pyro.sample("mu", dist.Normal(0.0, 1.0))


@pytest.mark.parametrize("call, message", [
    (lambda: to_arviz(eight_schools, args=(SIGMA, Y)), "exactly one of guide"),
    (lambda: to_arviz(eight_schools, Y, guide=nothing), "args="),
    (lambda: to_arviz(eight_schools, guide=nothing, args=(SIGMA, Y)), "no posterior draws"),
    (lambda: to_arviz(eight_schools, guide=AutoNormal(eight_schools)), "args=\\(...\\)"),
    (lambda: to_arviz(eight_schools, mcmc=MCMC(NUTS(eight_schools), num_samples=5), args=(SIGMA, Y)), "mcmc.run"),
    (lambda: to_arviz(eight_schools, mcmc={"mu": torch.zeros(1, 5)}, args=(SIGMA, Y)), "pyro.infer.MCMC"),
    (lambda: to_arviz(unobserved, guide=mu_guide, args=(1.0,)), "observes no site"),
    (lambda: to_arviz(minibatched, guide=mu_guide, args=(torch.zeros(10),)), "subsample_size"),
    (lambda: to_arviz(unexpanded, guide=mu_guide, args=(torch.zeros(10),)), "pyro.plate"),
])
def test_what_cannot_be_converted_is_one_line_naming_the_fix(call, message):
    with pytest.raises(ValueError, match=message) as error:
        call()
    assert "\n" not in str(error.value)


@pytest.mark.usefixtures("plain_pyro")
def test_converted_groups_work_under_arviz_1(conjugate_nuts, tmp_path):
    """summary, loo of every observed site, compare and plot_trace on real conversions, under arviz 1.x."""
    files = []
    for name, groups in {
        "two_instruments_nuts": posterior_groups(two_instruments, mcmc=conjugate_nuts, args=(LAB, FIELD)),
        "eight_schools_svi": posterior_groups(
            eight_schools, guide=svi_fit(eight_schools, AutoNormal(eight_schools), SIGMA, Y, steps=100),
            args=(SIGMA, Y), num_draws=200),
    }.items():
        files.append(arviz_adapter.save_groups(tmp_path / f"{name}.npz", *groups))
        assert arviz_adapter.check_saved(files[-1]).startswith("arviz adapter ok")
    out = run_adapter(*files)
    assert out.count("arviz adapter ok (arviz 1.") == 2
