"""Forecasts and imputation (dlvm.inference.forecast): scores against closed forms, exact
conditionals against a direct computation, and the importance sampler on a model whose
posterior predictive is known."""
import math

import numpy as np
import pytest
import pyro.distributions as dist
import torch

from dlvm.guides import pair
from dlvm.inference import fit
from dlvm.inference.forecast import (autoregression, coverage, crps_gaussian, crps_samples, fit_autoregression,
                                     forecast_mask, forecast_method, historical_mean, predict, random_walk)
from dlvm.models import build_model
from dlvm.models.decoders import DecoderModel, Emission


def test_crps_sample_formula_by_hand():
    # draws {0, 1}, y = 0: E|X - y| = 1/2, the one pair |0 - 1| = 1 counted twice over S(S-1) = 2
    assert crps_samples(np.array([0.0, 1.0]), 0.0) == pytest.approx(0.0)
    # draws {0, 2, 4}, y = 1: (1 + 1 + 3) / 3 - (2 + 4 + 2) * 2 / (2 * 6)
    assert crps_samples(np.array([[0.0], [2.0], [4.0]]), np.array([1.0]))[0] == pytest.approx(5 / 3 - 8 / 6)


def test_crps_samples_match_the_gaussian_closed_form():
    rng = np.random.default_rng(0)
    y = np.array([-1.0, 0.3, 2.5])
    draws = 1.5 + 2.0 * rng.standard_normal((40_000, 3))
    exact = crps_gaussian(1.5, 2.0, y)
    assert np.allclose(crps_samples(draws, y), exact, atol=0.03)
    # y at the mean of N(0, 1): (sqrt 2 - 1) / sqrt(pi)
    assert crps_gaussian(0.0, 1.0, 0.0) == pytest.approx((math.sqrt(2) - 1) / math.sqrt(math.pi))


def test_coverage_of_calibrated_draws():
    rng = np.random.default_rng(1)
    draws, y = rng.standard_normal((2000, 5000)), rng.standard_normal(5000)
    assert coverage(draws, y, 0.5) == pytest.approx(0.5, abs=0.03)
    assert coverage(draws, y, 0.9) == pytest.approx(0.9, abs=0.02)


def test_forecast_mask_and_bad_horizons():
    mask = forecast_mask((2, 5, 3), 2)
    assert mask[:, :3].all() and not mask[:, 3:].any()
    for bad in (0, 5, 7, 1.5):
        with pytest.raises(ValueError, match="horizon"):
            forecast_mask((2, 5, 3), bad)
    with pytest.raises(ValueError, match="windows"):
        forecast_mask((2, 5), 1)


def test_models_that_cannot_forecast_are_refused():
    with pytest.raises(ValueError, match="cannot forecast"):
        forecast_method(build_model("gmm", (3,), {"components": 2}))
    with pytest.raises(ValueError, match="Bernoulli"):
        forecast_method(build_model("vae", (4,), {"latent_dim": 2, "likelihood": "bernoulli"}))


def test_fa_conditional_draws_match_the_direct_formula():
    torch.manual_seed(0)
    model = build_model("fa", (4,), {"latent_dim": 2}).double()
    x = torch.randn(3, 4, dtype=torch.float64)
    mask = torch.tensor([[True, True, False, False], [True, True, False, False], [False, True, True, True]])
    pred = predict(model, None, x, mask, num_samples=40_000)
    cov, loc = model.covariance().detach(), model.loc.detach()
    o, m = [0, 1], [2, 3]
    mean = loc[m] + cov[m][:, o] @ torch.linalg.solve(cov[o][:, o], x[0, o] - loc[o])
    var = cov[m][:, m] - cov[m][:, o] @ torch.linalg.solve(cov[o][:, o], cov[o][:, m])
    draws = torch.as_tensor(pred.samples[:, 0, m])
    assert torch.allclose(draws.mean(0), mean, atol=0.03)
    assert torch.allclose(torch.cov(draws.T), var, atol=0.03)
    assert np.array_equal(pred.samples[:, mask.numpy()], np.broadcast_to(x.numpy()[mask.numpy()], (40_000, 7)))


def test_hmm_forecast_is_the_predictive_state_mixture():
    torch.manual_seed(0)
    model = build_model("hmm", (6, 1), {"states": 2, "covariance": "full"}).double()
    x = torch.randn(1, 6, 1, dtype=torch.float64)
    mask = forecast_mask(x.shape, 1)
    pred = predict(model, None, x, mask, num_samples=20_000)
    with torch.no_grad():
        probs = model.posterior(x, mask)[0, -1]
        mean = float((probs * model.means[:, 0]).sum())
    assert pred.samples[:, 0, -1, 0].mean() == pytest.approx(mean, abs=0.05)


@pytest.mark.parametrize("name, options", [("vrae", {"latent_dim": 2, "hidden": [8]}),
                                           ("timevae", {"latent_dim": 2, "hidden": [4], "likelihood": "gaussian"})])
def test_importance_forecast_runs_and_keeps_the_observed_part(name, options):
    torch.manual_seed(0)
    x = torch.rand(10, 8, 2)
    model = build_model(name, (8, 2), options)
    trained, guide = pair(model, "amortized", (8, 2))
    fit(trained, guide, x, epochs=2, progress=False)
    mask = forecast_mask(x.shape, 3)
    pred = predict(trained, guide, x, mask, num_samples=20, particles=16, rounds=2)
    assert pred.samples.shape == (20, 10, 8, 2)
    assert np.isfinite(pred.samples).all() and (pred.ess >= 1 - 1e-6).all() and (pred.ess <= 16 + 1e-6).all()
    assert np.array_equal(pred.samples[0][mask.numpy()], x.numpy()[mask.numpy()])
    assert pred.samples[:, :, 5:].std(0).min() > 0


class LinearDecoder(DecoderModel):
    """x | z ~ N(W z + b, s^2 I): Factor Analysis written as a decoder model."""

    event_shape = (4,)
    latent_dim = 2

    def __init__(self):
        super().__init__()
        self.emission = Emission(2, (4,), "gaussian-fixed", 0.5)

    def features(self, z, steps=None):
        return z


class BroadGuide:
    """A poor amortized guide, q(z | x) = N(0, I) for every row: the sampler must correct it."""

    def distribution(self, x, mask=None):
        return dist.Normal(x.new_zeros(x.shape[0], 2), 1.0).to_event(1)


def test_importance_sampler_recovers_a_linear_gaussian_predictive():
    """The importance draws of the missing half match the exact conditional of
    x ~ N(b, W W^T + s^2 I) (the decoder's marginal)."""
    torch.manual_seed(0)
    model = LinearDecoder()
    x = torch.tensor([[2.0, -1.0, 0.0, 0.0], [0.5, 0.5, 0.0, 0.0]])
    mask = torch.tensor([[True, True, False, False]] * 2)
    pred = predict(model, BroadGuide(), x, mask, num_samples=20_000, particles=2000, rounds=3)
    w, b = model.emission.loc.weight.detach(), model.emission.loc.bias.detach()
    cov = w @ w.T + 0.25 * torch.eye(4)
    for row in range(2):
        mean = b[2:] + cov[2:, :2] @ torch.linalg.solve(cov[:2, :2], x[row, :2] - b[:2])
        var = cov[2:, 2:] - cov[2:, :2] @ torch.linalg.solve(cov[:2, :2], cov[:2, 2:])
        draws = torch.as_tensor(pred.samples[:, row, 2:])
        assert torch.allclose(draws.mean(0), mean, atol=0.04)
        assert torch.allclose(draws.var(0), var.diagonal(), rtol=0.1)


def test_baselines_shapes_and_autoregression_recovers_coefficients():
    rng = np.random.default_rng(0)
    n, t = 200, 30
    series = np.zeros((n, t, 1))
    for s in range(1, t):
        series[:, s] = 0.5 + 0.7 * series[:, s - 1] + 0.1 * rng.standard_normal((n, 1))
    coef, chol = fit_autoregression(series[:, 5:], 1)
    assert coef[:, 0] == pytest.approx([0.5, 0.7], abs=0.02)
    assert chol[0, 0] == pytest.approx(0.1, abs=0.01)
    past = series[:4, :20]
    for baseline in (random_walk, historical_mean, autoregression):
        draws = baseline(series, past, 3, 50, rng)
        assert draws.shape == (50, 4, 3, 1) and np.isfinite(draws).all()


def _correlated_noise_timevae(window, rho):
    """A TimeVAE whose mean is a constant per feature (no decoder reads z) and whose noise is
    AR(1) with the given coefficients, correlated 0.5 across the two features."""
    from dlvm.models.timevae import MAX_NOISE_AR, NOISE_RATE, TimeVAE

    model = TimeVAE(2, window, 2, (4,), residual=False, noise_warmup=0)
    model.initialize(torch.randn(32, window, 2, dtype=torch.float64).float())
    model.double()
    with torch.no_grad():
        model.noise_memory.copy_(torch.atanh(torch.as_tensor(rho) / MAX_NOISE_AR) / NOISE_RATE)
        model.noise_correlation.zero_()
        model.noise_correlation[1, 0] = 1 / math.sqrt(3) / NOISE_RATE  # M = [[1, 0], [1/sqrt 3, 1]]: correlation 0.5
    return model


@torch.no_grad()
def test_correlated_noise_forecast_goes_on_from_the_observed_residual():
    """With noise e_t = rho e_(t-1) + v_t and a mean that does not depend on z, the draws of the
    masked last steps have mean loc + rho^h e_T (h steps ahead of the last observed step T), and
    the importance weights use the exact marginal of the observed entries."""
    from dlvm.inference.forecast import _likelihood_draws, _observed_log_joint

    torch.manual_seed(0)
    window, horizon, rho = 10, 4, torch.tensor([0.9, 0.0], dtype=torch.float64)
    model = _correlated_noise_timevae(window, rho)
    z = torch.zeros(1, 1, 2, dtype=torch.float64)
    px = model.likelihood(z[0])
    x = px.sample()
    mask = forecast_mask(x.shape, horizon)
    draws = _likelihood_draws(model, torch.zeros(20_000, 1, 2, dtype=torch.float64), x, mask)
    last = x[0, window - horizon - 1] - px.mean[0, 0]
    assert abs(float(rho[0] * last[0])) > 0.2 * float(px.stddev[0, 0, 0])  # a residual to go on from
    for h in range(1, horizon + 1):
        expected = px.mean[0, 0] + rho ** h * last
        torch.testing.assert_close(draws[:, 0, window - horizon - 1 + h].mean(0), expected, atol=float(0.03 * px.stddev[0, 0].max()), rtol=0)
    observed = mask[0].reshape(-1)
    cov = px.window_covariance()[observed][:, observed]
    reference = dist.MultivariateNormal(px.mean.reshape(-1)[observed], cov).log_prob(x.reshape(-1)[observed])
    reference = reference + dist.Normal(0.0, 1.0).log_prob(z).sum()
    torch.testing.assert_close(_observed_log_joint(model, z, x, mask)[0, 0], reference)
