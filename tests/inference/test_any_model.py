"""fit on a model and guide written in plain Pyro: the same numbers as pyro.infer.SVI, minibatches
with the right scaling, ELBOs by name or instance, enumeration never silently mishandled."""
import math

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import SVI, Trace_ELBO, TraceGraph_ELBO, config_enumerate
from pyro.infer.autoguide import AutoDelta, AutoDiagonalNormal, AutoNormal
from pyro.nn import PyroModule, PyroParam
from torch.distributions import constraints

from dlvm.inference import fit

SIGMA = torch.tensor([15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0])
Y = torch.tensor([28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0])


def eight_schools(sigma, y=None):
    mu = pyro.sample("mu", dist.Normal(0.0, 5.0))
    tau = pyro.sample("tau", dist.HalfCauchy(5.0))
    with pyro.plate("schools", len(sigma)):
        theta = pyro.sample("theta", dist.Normal(mu, tau))
        pyro.sample("obs", dist.Normal(theta, sigma), obs=y)


def normal_mean(y):
    loc = pyro.sample("loc", dist.Normal(0.0, 10.0))
    with pyro.plate("data", len(y)):
        pyro.sample("y", dist.Normal(loc, 2.0), obs=y)


def normal_mean_guide(y):
    q_loc = pyro.param("q_loc", torch.tensor(0.0))
    q_scale = pyro.param("q_scale", torch.tensor(1.0), constraint=constraints.positive)
    pyro.sample("loc", dist.Normal(q_loc, q_scale))


class Regression(PyroModule):
    """A PyroModule on its natural layout: covariates (N, 2) as an argument, targets (N,)."""

    def __init__(self):
        super().__init__()
        self.noise = PyroParam(torch.tensor(1.0), constraint=constraints.positive)

    def forward(self, x, y=None):
        w = pyro.sample("w", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
        with pyro.plate("data", x.shape[0]):
            pyro.sample("y", dist.Normal(x @ w, self.noise), obs=y)


def svi_losses(model, guide, args, steps, lr, elbo=None, seed=0):
    pyro.set_rng_seed(seed)
    svi = SVI(model, guide, pyro.optim.Adam({"lr": lr}), elbo or Trace_ELBO())
    return [svi.step(*args) for _ in range(steps)]


REGRESSION_X = torch.randn(8, 2, generator=torch.Generator().manual_seed(1))
REGRESSION_Y = REGRESSION_X @ torch.tensor([1.0, -2.0]) + 0.3


@pytest.mark.parametrize("case", ["eight-schools/AutoNormal", "hand-written pyro.param guide",
                                  "PyroModule/AutoDiagonalNormal", "eight-schools/TraceGraph instance"])
def test_fit_reproduces_svi_step_for_step(case):
    builders = {
        "eight-schools/AutoNormal": (lambda: eight_schools, lambda m: AutoNormal(m), (SIGMA, Y), None),
        "hand-written pyro.param guide": (lambda: normal_mean, lambda m: normal_mean_guide,
                                          (torch.tensor([1.0, 2.5, 0.3, 1.7]),), None),
        "PyroModule/AutoDiagonalNormal": (Regression, lambda m: AutoDiagonalNormal(m), (REGRESSION_X, REGRESSION_Y), None),
        "eight-schools/TraceGraph instance": (lambda: eight_schools, lambda m: AutoNormal(m), (SIGMA, Y),
                                              lambda: TraceGraph_ELBO(num_particles=4, vectorize_particles=True)),
    }
    build_model, build_guide, args, build_elbo = builders[case]
    pyro.clear_param_store()
    model = build_model()
    expected = svi_losses(model, build_guide(model), args, 40, 0.05, build_elbo() if build_elbo else None, seed=3)
    pyro.clear_param_store()
    model = build_model()
    result = fit(model, build_guide(model), args=args, steps=40, lr=0.05, seed=3, progress=False,
                 elbo=build_elbo() if build_elbo else "trace")
    np.testing.assert_allclose(result.loss, expected, rtol=1e-6)
    assert len(result.history) == 40 and result.epochs_run == 40
    assert result.params  # named values of what was trained


def test_params_are_found_where_they_live_and_named():
    pyro.clear_param_store()
    result = fit(normal_mean, normal_mean_guide, args=(torch.tensor([4.0, 6.0, 5.0, 5.0]),), steps=1500, lr=0.05,
                 lr_decay=0.997, progress=False)
    # conjugate: posterior of the mean is Normal(m, s) with 1/s^2 = 1/100 + 4/4, m = s^2 * 20/4
    s2 = 1.0 / (1 / 100 + 4 / 4)
    assert set(result.params) == {"q_loc", "q_scale"}
    assert abs(float(result.params["q_loc"]) - s2 * 20 / 4) < 0.1
    assert abs(float(result.params["q_scale"]) - math.sqrt(s2)) < 0.1
    module = Regression()
    pyro.clear_param_store()
    result = fit(module, AutoNormal(module), args=(REGRESSION_X, REGRESSION_Y), steps=5, progress=False)
    assert "model.noise_unconstrained" in result.params and "AutoNormal.locs.w" in result.params


def test_a_model_that_subsamples_itself_works_unchanged():
    n = 2000
    y = torch.randn(n, generator=torch.Generator().manual_seed(0)) * 2.0 + 3.0

    def model(y):
        loc = pyro.sample("loc", dist.Normal(0.0, 10.0))
        with pyro.plate("data", len(y), subsample_size=100) as index:
            pyro.sample("y", dist.Normal(loc, 2.0), obs=y[index])

    pyro.clear_param_store()
    result = fit(model, AutoNormal(model), args=(y,), steps=1500, lr=0.02, progress=False)
    assert abs(float(result.params["AutoNormal.locs.loc"]) - float(y.mean())) < 0.1


def logistic_data(n=100_000, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, generator=g)
    y = torch.bernoulli(torch.sigmoid(x @ torch.tensor([1.0, -0.5, 0.25]) - 0.3), generator=g)
    return x, y


def logistic(x, y=None):
    w = pyro.sample("w", dist.Normal(0.0, 1.0).expand([3]).to_event(1))
    b = pyro.sample("b", dist.Normal(0.0, 1.0))
    with pyro.plate("data", x.shape[0]):
        pyro.sample("y", dist.Bernoulli(logits=x @ w + b), obs=y)


def test_minibatches_over_aligned_tensors_recover_the_full_batch_posterior():
    x, y = logistic_data()
    pyro.clear_param_store()
    full_guide = AutoNormal(logistic)
    fit(logistic, full_guide, args=(x, y), steps=600, lr=0.03, progress=False)
    full_loc, full_scale = full_guide.locs.w.detach().clone(), full_guide._get_loc_and_scale("w")[1].detach()
    pyro.clear_param_store()
    batch_guide = AutoNormal(logistic)
    result = fit(logistic, batch_guide, data=(x, y), batch_size=2_000, epochs=12, lr=0.03, lr_decay=0.7,
                 progress=False)
    assert len(result.loss) == 12 * 50
    batch_loc = batch_guide.locs.w.detach()
    assert torch.all((batch_loc - full_loc).abs() < 2 * full_scale), (batch_loc, full_loc, full_scale)
    # the minibatch ELBO is scaled to all rows: per row it matches the full-batch loss
    assert abs(result.history["elbo"].iloc[-1] + float(Trace_ELBO().loss(logistic, batch_guide, x, y)) / len(y)) < 0.01


def test_minibatches_need_the_rows_plate():
    def unnamed(x, y=None):
        w = pyro.sample("w", dist.Normal(0.0, 1.0).expand([3]).to_event(1))
        with pyro.plate("rows", x.shape[0]):
            pyro.sample("y", dist.Bernoulli(logits=x @ w), obs=y)

    x, y = logistic_data(1000)
    pyro.clear_param_store()
    with pytest.raises(ValueError, match="plate called 'data'.*plate=NAME"):
        fit(unnamed, AutoNormal(unnamed), data=(x, y), batch_size=100, epochs=1, progress=False)
    pyro.clear_param_store()
    result = fit(unnamed, AutoNormal(unnamed), data=(x, y), batch_size=100, epochs=1, plate="rows", progress=False)
    assert result.epochs_run == 1


@config_enumerate
def mixture(y):
    weights = pyro.param("weights", torch.tensor([0.5, 0.5]), constraint=constraints.simplex)
    locs = pyro.param("locs", torch.tensor([-1.0, 1.0]))
    with pyro.plate("data", len(y)):
        z = pyro.sample("z", dist.Categorical(weights))
        pyro.sample("y", dist.Normal(locs[z], 1.0), obs=y)


def test_default_elbo_enumerates_and_an_explicit_sampling_elbo_is_refused():
    g = torch.Generator().manual_seed(0)
    y = torch.cat([torch.randn(200, generator=g) - 3.0, torch.randn(200, generator=g) + 3.0])
    pyro.clear_param_store()
    result = fit(mixture, lambda y: None, args=(y,), steps=300, lr=0.05, progress=False)
    assert result.elbo == "TraceEnum_ELBO"
    locs = sorted(float(v) for v in result.params["locs"])
    assert abs(locs[0] + 3.0) < 0.3 and abs(locs[1] - 3.0) < 0.3
    pyro.clear_param_store()
    with pytest.raises(ValueError, match="z is marked for enumeration.*traceenum"):
        fit(mixture, lambda y: None, args=(y,), steps=3, elbo="trace", progress=False)


def test_map_fit_with_autodelta_and_convergence():
    pyro.clear_param_store()
    y = torch.tensor([4.0, 6.0, 5.0, 5.0])
    result = fit(normal_mean, AutoDelta(normal_mean), args=(y,), steps=5000, lr=0.05, tol=1e-6, tol_window=50,
                 progress=False)
    assert result.converged and result.epochs_run < 5000
    # MAP of the mean under the Normal(0, 10) prior: 20/4 / (1/100 + 4/4)
    assert abs(float(result.params["AutoDelta.loc"]) - 5.0 / (1 + 1 / 100)) < 1e-2


def test_evaluate_any_model_against_closed_forms():
    from dlvm.inference import evaluate

    y = torch.tensor([4.0, 6.0, 5.0, 5.5])
    # log p(y): y ~ N(0, 4 I + 100 11^T); posterior of the mean N(m, s^2)
    cov = 4.0 * torch.eye(4) + 100.0
    log_evidence = float(dist.MultivariateNormal(torch.zeros(4), cov).log_prob(y))
    s2 = 1.0 / (1 / 100 + 4 / 4)
    m = s2 * float(y.sum()) / 4
    pyro.clear_param_store()
    pyro.param("q_loc", torch.tensor(m))
    pyro.param("q_scale", torch.tensor(math.sqrt(s2)), constraint=constraints.positive)
    exact = evaluate(normal_mean, normal_mean_guide, args=(y,), num_samples=20)
    assert abs(exact.elbo - log_evidence) < 1e-4 and abs(exact.iwae - log_evidence) < 1e-4
    pyro.clear_param_store()
    pyro.param("q_loc", torch.tensor(m + 0.5))
    pyro.param("q_scale", torch.tensor(1.5), constraint=constraints.positive)  # wider than p(mu | y)
    kl = float(torch.distributions.kl_divergence(dist.Normal(m + 0.5, 1.5), dist.Normal(m, math.sqrt(s2))))
    off = evaluate(normal_mean, normal_mean_guide, args=(y,), num_samples=4000)
    assert abs(off.elbo - (log_evidence - kl)) < 4 * off.elbo_se
    assert off.elbo < off.iwae < log_evidence + 1e-3 and log_evidence - off.iwae < 0.01
    # enumerated: the discrete latents are summed out exactly
    pyro.clear_param_store()
    pyro.param("weights", torch.tensor([0.3, 0.7]), constraint=constraints.simplex)
    pyro.param("locs", torch.tensor([-2.0, 1.0]))
    data = torch.tensor([-2.5, 0.3, 1.1, -1.0])
    expected = float(torch.logsumexp(torch.log(torch.tensor([0.3, 0.7])) +
                                     dist.Normal(torch.tensor([-2.0, 1.0]), 1.0).log_prob(data[:, None]), -1).sum())
    bounds = evaluate(mixture, lambda y: None, args=(data,), num_samples=5)
    assert bounds.num_samples == 1 and abs(bounds.elbo - expected) < 1e-5 and abs(bounds.iwae - expected) < 1e-5
