"""TimeVAE: block shapes and structure, the reconstruction-weight scale, decomposition, bad input."""
import math

import numpy as np
import pytest
import torch

from dlvm.guides import pair
from dlvm.inference import fit
from dlvm.models import TimeVAE, build_model
from dlvm.models.timevae import (AGGREGATE_WINDOWS, NOISE_RATE, NOISE_START, CorrelatedNoiseGaussian, Level, Seasonal, Trend,
                                 noise_scale_for_weight)

B, K, T, D = 5, 3, 12, 2


def test_block_shapes_and_structure():
    z = torch.randn(B, K)
    level, trend, seasonal = Level(K, T, D)(z), Trend(K, T, D, 1)(z), Seasonal(K, T, D, 3, 2)(z)
    for out in (level, trend, seasonal, Trend(K, T, D, 3)(z)):
        assert out.shape == (B, T, D)
    assert torch.allclose(level, level[:, :1].expand_as(level))  # constant in time
    second = trend[:, 2:] - 2 * trend[:, 1:-1] + trend[:, :-2]  # degree 1: zero second differences
    assert second.abs().max() < 1e-6 and trend[:, 1:].sub(trend[:, :-1]).abs().max() > 1e-4
    assert torch.allclose(trend[:, 0], torch.zeros(B, D))  # tau_0 = 0
    assert torch.allclose(seasonal[:, 6:], seasonal[:, :6])  # period 3 seasons x 2 steps
    assert torch.equal(seasonal[:, 0], seasonal[:, 1]) and not torch.equal(seasonal[:, 1], seasonal[:, 2])


def test_model_shapes_level_only_is_constant_and_base_decoder():
    model = TimeVAE(D, T, K, (4, 8), level=True, residual=False)
    z = torch.randn(B, K)
    mean = model.decode(z)
    assert mean.shape == (B, T, D) and torch.allclose(mean, mean[:, :1].expand_as(mean), atol=1e-6)
    base = TimeVAE(D, T, K, (4, 8))
    assert not base.interpretable and base.features(z).shape == (B, T, 4)
    assert base.sample(7).shape == (7, T, D) and base.sample(7, noise=True).shape == (7, T, D)
    odd = TimeVAE(D, 13, K, (4, 8))  # ceil(13 / 4) = 4 encoded steps, decoded to 16 and cropped
    assert odd.decode(z).shape == (B, 13, D)


def test_recon_weight_three_is_scale_one_over_root_six_and_the_loss_matches():
    assert noise_scale_for_weight(3.0) == pytest.approx(1 / math.sqrt(6))
    model = TimeVAE(D, T, K, (4,), recon_weight=3.0)
    x = torch.rand(B, T, D) * 10 + 5
    model.initialize(x)
    z = torch.randn(B, K)
    px = model.likelihood(z)
    u, mean = model.input_scaler(x), model.input_scaler(px.mean)
    # -log p(x | z) = 3 * SSE (scaled) + T D log(sigma sqrt(2 pi)) + sum log span (change of scale)
    expected = 3.0 * ((u - mean) ** 2).sum((1, 2)) + T * D * math.log(math.sqrt(2 * math.pi) / math.sqrt(6)) \
        + T * model.input_scaler.span.log().sum()
    assert torch.allclose(-px.log_prob(x).sum((1, 2)), expected, rtol=1e-5)


def test_scaling_sample_on_the_original_scale():
    rng = np.random.default_rng(0)
    x = np.stack([rng.normal(100, 5, (64, T)), rng.normal(1e6, 1e4, (64, T))], -1).astype(np.float32)
    model, guide = pair(TimeVAE(D, T, K, (4, 8)), "amortized", (T, D))
    fit(model, guide, x, epochs=3, batch_size=32, lr=1e-3, progress=False)
    assert torch.allclose(model.input_scaler.low, torch.tensor(x.min((0, 1))))
    draws = model.sample(200).numpy()
    for d in range(D):  # samples land in the data's range, not in [0, 1]
        assert abs(draws[..., d].mean() - x[..., d].mean()) < 0.5 * (x[..., d].max() - x[..., d].min())


def test_decomposition_recovers_known_trend_and_seasonality():
    rng = np.random.default_rng(1)
    n, window = 768, 24
    t = np.arange(window) / window
    trend = rng.uniform(-2, 2, (n, 1)) * t  # a line through 0 with a random slope per window
    pattern = rng.normal(size=(n, 4))
    pattern -= pattern.mean(1, keepdims=True)
    season = pattern[:, (np.arange(window) // 3) % 4]  # 4 seasons of 3 steps
    level = rng.normal(size=(n, 1))
    x = (level + trend + season + 0.05 * rng.normal(size=(n, window)))[..., None].astype(np.float32)
    torch.manual_seed(0)
    model = TimeVAE(1, window, 8, (16, 32), trend_degree=1, seasonality=["4:3"], residual=False, recon_weight=1000)
    trained, guide = pair(model, "amortized", (window, 1))
    fit(trained, guide, x, epochs=150, batch_size=64, lr=3e-3, progress=False, seed=0)
    parts = {k: v.numpy()[..., 0] for k, v in model.decompose(torch.as_tensor(x), guide).items()}
    total = sum(parts.values())
    assert np.allclose(total, model.reconstruct(torch.as_tensor(x), guide).numpy()[..., 0], atol=1e-4)

    def centred_corr(a, b):  # parts are identified up to a constant per window (level)
        a, b = a - a.mean(1, keepdims=True), b - b.mean(1, keepdims=True)
        return np.corrcoef(a.ravel(), b.ravel())[0, 1]

    assert centred_corr(parts["trend"], trend) > 0.9
    assert centred_corr(parts["seasonal_0"], season) > 0.9


def test_bad_input():
    with pytest.raises(ValueError, match="too short for 3 stride-2 convolution layers: need at least 8 steps"):
        TimeVAE(2, 7, 4, (4, 8, 16))
    with pytest.raises(ValueError, match="need at least 8 steps"):
        build_model("timevae", (6, 2), {"hidden": [4, 8, 16]})
    with pytest.raises(ValueError, match="spans 15 steps, longer than the window of 12"):
        TimeVAE(2, 12, 4, (4,), seasonality=["5:3"])
    with pytest.raises(ValueError, match="S:L"):
        TimeVAE(2, 12, 4, (4,), seasonality=["5-3"])
    with pytest.raises(ValueError, match="trend degree"):
        TimeVAE(2, 12, 4, (4,), trend_degree=-1)
    with pytest.raises(ValueError, match="needs sequences"):
        build_model("timevae", (12,), {})
    model, guide = pair(TimeVAE(2, 12, 4, (4,)), "amortized", (12, 2))
    x = np.random.default_rng(0).random((20, 12, 2))
    x[3, 4, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        fit(model, guide, x, epochs=1, progress=False)
    with pytest.raises(ValueError, match="NaN"):
        model.initialize(torch.as_tensor(x, dtype=torch.float32))
    with pytest.raises(ValueError, match=r"windows of shape \(N, 12, 2\)"):
        model.initialize(torch.zeros(3, 10, 2))


def test_transformer_encoder_option():
    x = torch.rand(16, 8, 2)
    model, guide = pair(build_model("timevae", (8, 2), {"latent_dim": 2, "hidden": [4, 8]}), "amortized", (8, 2),
                        encoder="transformer")
    assert type(guide.encoder).__name__ == "TransformerEncoder" and guide.encoder.output_dim == 4
    fit(model, guide, x, epochs=1, batch_size=8, progress=False)
    assert model.reconstruct(x, guide).shape == (16, 8, 2)


# ----------------------------------------------------------------------------- DLM state blocks
def _state_model(**options):
    torch.manual_seed(0)
    model = build_model("timevae", (8, 2), {"latent_dim": 2, "hidden": [4, 8], "trend_poly": 1, "local_level": True,
                                            "ar_order": 2, "likelihood": "gaussian", **options})
    model.states.level_log_var.data.fill_(math.log(0.05))
    model.states.ar_log_var.data.fill_(math.log(0.1))
    model.states.partial.data.copy_(torch.tensor([[0.8, -0.3], [0.2, 0.5]]))
    return model


def test_pacf_to_ar_is_stationary_and_matches_durbin_levinson_by_hand():
    from dlvm.models.timevae import pacf_to_ar

    r1, r2 = 0.5, -0.4
    assert torch.allclose(pacf_to_ar(torch.tensor([r1, r2])), torch.tensor([r1 - r2 * r1, r2]))
    phi = pacf_to_ar(torch.rand(100, 3) * 1.98 - 0.99)
    for row in phi:  # roots of 1 - phi_1 x - ... - phi_p x^p outside the unit circle
        roots = np.roots(np.r_[-row.numpy()[::-1], 1.0])
        assert (np.abs(roots) > 1).all()


def test_state_covariances_match_simulated_processes():
    model = _state_model()
    cov = model.states.covariances()
    phi = model.states.coefficients().detach().numpy()
    rng = np.random.default_rng(0)
    n = 100_000
    e = rng.normal(0, math.sqrt(0.1), (n, 8))
    a = np.zeros((n, 8))
    for t in range(8):
        a[:, t] = e[:, t] + sum(phi[0, i] * a[:, t - i - 1] for i in range(2) if t - i - 1 >= 0)
    np.testing.assert_allclose(np.cov(a.T), cov["ar"][0].detach().numpy(), atol=0.01)
    walk = np.cumsum(rng.normal(0, math.sqrt(0.05), (n, 8)), 1)
    np.testing.assert_allclose(np.cov(walk.T), cov["local_level"][1].detach().numpy(), atol=0.02)


def test_temporal_gaussian_log_prob_is_the_multivariate_normal_density():
    from dlvm.models.timevae import TemporalGaussian

    model = _state_model()
    model.initialize(torch.rand(6, 8, 2) * 3)
    z = torch.randn(3, 2)
    px = model.likelihood(z)
    assert isinstance(px, TemporalGaussian) and px.batch_shape == (3, 8, 2)
    x = px.sample()
    mvn = torch.distributions.MultivariateNormal(px.loc.transpose(1, 2), scale_tril=px.scale_tril)
    assert torch.allclose(px.log_prob(x).sum((1, 2)), mvn.log_prob(x.transpose(1, 2)).sum(-1), atol=1e-4)
    assert px.sample((5,)).shape == (5, 3, 8, 2)


def test_decomposition_adds_up_and_states_are_the_gaussian_smoother():
    model = _state_model()
    x = torch.rand(5, 8, 2) * 3
    model.initialize(x)
    _, guide = pair(model, "amortized", (8, 2))
    parts = model.decompose(x, guide)
    assert set(parts) == {"local_level", "trend", "ar", "residual"}
    assert torch.allclose(sum(parts.values()), model.reconstruct(x, guide), atol=1e-5)
    # the smoothed AR state by conditioning N(mean, Sigma) directly, feature 0 of row 0
    z = guide.encode(x)
    px = model.likelihood(z)
    span = model.input_scaler.span[0]
    sigma = (px.scale_tril[0, 0] @ px.scale_tril[0, 0].T).double()
    ar_cov = model.states.covariances()["ar"][0].double() * span ** 2
    smoothed = ar_cov @ torch.linalg.solve(sigma, (x[0, :, 0] - px.loc[0, :, 0]).double())
    assert torch.allclose(parts["ar"][0, :, 0].double(), smoothed, atol=1e-4)
    with pytest.raises(ValueError, match="AR order"):
        build_model("timevae", (8, 2), {"hidden": [4], "ar_order": 8})
    holes = torch.ones(5, 8, 2, dtype=torch.bool)
    holes[0, 3, 1] = False
    with pytest.raises(ValueError, match="complete windows"):
        model.initialize(x, holes)


def test_exact_latent_is_the_gaussian_posterior_mean():
    """Without the residual decoder E[u | z] = m + W z, so E[z | u] = W^T (W W^T + Sigma)^-1 (u - m)
    over both features stacked (the covariance form, against the precision form used)."""
    model = _state_model(residual=False, seasonality=["4:1"])
    x = torch.rand(5, 8, 2) * 3
    model.initialize(x)
    with torch.no_grad():
        k = model.latent_dim
        loc = model._scaled(torch.cat([torch.zeros(1, k), torch.eye(k)])).loc  # (1 + K, T, D)
        m, w = loc[0].T.reshape(-1), (loc[1:] - loc[:1]).permute(2, 1, 0).reshape(-1, k)  # feature-major
        tril = model._scaled_tril(model._scaled(torch.zeros(1, k)))[0]
        sigma = torch.block_diag(*(t @ t.T for t in tril))
        u = model.input_scaler(x).transpose(1, 2).reshape(5, -1)
        direct = (w.T.double() @ torch.linalg.solve((w @ w.T + sigma).double(), (u - m).T.double())).T
        assert torch.allclose(model.exact_latent(x).double(), direct, atol=1e-4)
        _, guide = pair(model, "amortized", (8, 2))
        assert torch.allclose(sum(model.decompose(x, guide).values()), model.reconstruct(x, guide), atol=1e-5)


def test_exact_log_prob_is_bayes_rule_at_any_z_and_share_noise_moves_variance():
    """log p(x) = log p(x | z) + log p(z) - log p(z | x) for every z, with p(x | z) the per-step
    chain of TemporalGaussian and p(z | x) the Gaussian of exact_latent with precision P."""
    model = _state_model(residual=False, seasonality=["4:1"])
    x = torch.rand(5, 8, 2) * 3
    model.initialize(x)
    with torch.no_grad():
        m, w, tril = model._affine()
        precision = torch.eye(2) + sum(wd.T @ torch.cholesky_solve(wd, td) for wd, td in zip(w, tril))
        mean = model.exact_latent(x)
        posterior = torch.distributions.MultivariateNormal(mean, precision_matrix=precision)
        for z in (mean, mean + torch.randn(5, 2)):
            joint = model.likelihood(z).log_prob(x).sum((1, 2)) + torch.distributions.Normal(0, 1).log_prob(z).sum(1)
            assert torch.allclose(model.exact_log_prob(x), joint - posterior.log_prob(z), atol=1e-3)
        var = (torch.nn.functional.softplus(model.emission.scale.bias) + model.emission.min_scale) ** 2
        model.share_noise(0.3)
        after = (torch.nn.functional.softplus(model.emission.scale.bias) + model.emission.min_scale) ** 2
        assert torch.allclose(after, 0.7 * var, rtol=1e-4)
        assert torch.allclose(model.states.ar_log_var.exp(), 0.3 * var.mean().expand(2), rtol=1e-4)
        assert torch.allclose(model.states.level_log_var.exp(), 0.3 * var.mean().expand(2) / 8, rtol=1e-4)
    with pytest.raises(ValueError, match="fraction"):
        model.share_noise(1.0)
    with pytest.raises(ValueError, match="residual decoder"):
        _state_model().exact_latent(x)


@pytest.mark.slow
def test_decomposition_recovers_known_components():
    """Synthetic windows from known components under dlvm.experiments.studies.dlm.DESIGN, where the exact
    smoother with the true parameters recovers every block to >= 0.92. Every block's correlation
    with its component is >= 0.9 and its size is near right (a smoothed mean's sd is at most the
    correlation times the true sd; measured 0.82-0.97 over seeds 0-1-2); the AR coefficient is near
    its true 0.5 (measured 0.52-0.58). Measured correlations, seeds 0/1/2: level 0.944/0.945/0.950,
    trend 0.932/0.935/0.934, season 0.979/0.978/0.978, AR 0.918/0.929/0.928 (the exact smoother:
    AR 0.926/0.930/0.929)."""
    from dlvm.experiments.studies.dlm import DESIGN, fit_decomposition, recovery, synthetic_components

    parts = synthetic_components(600, seed=0, **DESIGN)
    model, guide, x = fit_decomposition(parts, epochs=80)
    table, found = recovery(model, guide, x, parts)
    assert np.allclose(sum(found.values()), model.reconstruct(torch.as_tensor(x), guide).numpy()[..., 0], atol=1e-4)
    assert (table["correlation"] >= 0.9).all(), table
    assert table["sd ratio"].between(0.75, 1.1).all(), table
    assert abs(float(model.states.coefficients().detach()[0, 0]) - DESIGN["phi"]) < 0.1


def test_default_likelihood_is_learned_and_the_paper_recipe_stays_available():
    model = TimeVAE(D, T, K, (4,))
    assert model.noise_model == "gaussian-correlated" and model.sample_noise and model.noise_scale().shape == (D,)
    paper = TimeVAE(D, T, K, (4,), recon_weight=3.0)
    assert paper.noise_model == "gaussian-fixed" and not paper.sample_noise and paper.noise_scale() is None
    assert TimeVAE(D, T, K, (4,), likelihood="gaussian-step").noise_scale().shape == (T, D)
    assert build_model("timevae", (T, D), {"hidden": [4]}).noise_model == "gaussian-correlated"
    assert build_model("timevae", (T, D), {"hidden": [4], "noise_scale": 0.1}).noise_model == "gaussian-fixed"
    with pytest.raises(ValueError, match="likelihood"):
        TimeVAE(D, T, K, (4,), likelihood="laplace")


def test_initialize_starts_each_noise_scale_sharp_or_at_a_smaller_feature_sd():
    rng = np.random.default_rng(0)
    spiky = rng.normal(0, 1, (64, T))
    spiky[0, 0] = 500.0  # one outlier: the scaled sd of this feature is below NOISE_START
    x = torch.as_tensor(np.stack([rng.normal(0, 1, (64, T)), spiky], -1), dtype=torch.float32)
    model = TimeVAE(D, T, K, (4,))
    model.initialize(x)
    sd = model.input_scaler(x).reshape(-1, D).numpy().std(0)
    assert sd[0] > NOISE_START > sd[1]
    assert np.allclose(model.noise_scale().detach().numpy(), np.minimum(sd, NOISE_START), rtol=1e-4)


def test_learned_noise_scale_recovers_a_known_per_feature_sd():
    """x_ntd = c_d L_n + e_ntd, L_n ~ N(0, 1), e ~ N(0, s_d^2): the ELBO's optimum puts the window
    level in z and the rest in sigma_d = s_d, on each feature's own scale."""
    rng = np.random.default_rng(0)
    n, window = 1024, 8
    level = rng.normal(size=(n, 1))
    sd = np.array([1.0, 20.0])
    x = np.stack([3 * level + sd[0] * rng.normal(size=(n, window)),
                  100 + 50 * level + sd[1] * rng.normal(size=(n, window))], -1).astype(np.float32)
    torch.manual_seed(0)
    model, guide = pair(TimeVAE(2, window, 2, (8, 16), noise_warmup=80), "amortized", (window, 2))
    fit(model, guide, x, epochs=60, batch_size=128, lr=3e-3, progress=False, seed=0)
    learned = (model.noise_scale() * model.input_scaler.span).detach().numpy()
    np.testing.assert_allclose(learned, sd, rtol=0.15)


def test_noise_scales_are_held_for_the_warmup_steps_then_learned():
    x = np.random.default_rng(0).normal(size=(64, T, D)).astype(np.float32)
    model, guide = pair(TimeVAE(D, T, K, (4,), noise_warmup=4), "amortized", (T, D))
    fit(model, guide, x, epochs=1, batch_size=16, lr=1e-2, progress=False)  # 4 steps
    start = model.noise_scale().detach().clone()
    assert int(model.noise_steps) >= 4 and torch.allclose(start, torch.full((D,), NOISE_START), rtol=1e-4)
    fit(model, guide, x, epochs=1, batch_size=16, lr=1e-2, progress=False, initialize=False)
    assert (model.noise_scale().detach() > 1.2 * start).all()  # noise this strong lifts every sigma


@pytest.mark.parametrize("likelihood", ["gaussian-step", "gaussian", "gaussian-correlated"])
def test_predictive_sample_variance_is_expected_variance_plus_variance_of_mean(likelihood):
    """Law of total variance: per (t, d), Var[x] = E_z[Var[x | z]] + Var_z[E[x | z]] over the draws'
    latents; the mean option draws E[x | z] alone."""
    torch.manual_seed(0)
    model = TimeVAE(D, T, K, (4, 8), likelihood=likelihood)
    model.initialize(torch.rand(32, T, D) * torch.tensor([1.0, 100.0]))
    with torch.no_grad():
        for p in model.parameters():  # spread the scales so that both terms matter
            p.add_(0.3 * torch.randn_like(p))
        if likelihood != "gaussian":  # a learned noise scale of the mean's size on the scaled data
            model.log_noise.fill_(math.log(0.2) / NOISE_RATE)
    n = 40_000
    torch.manual_seed(1)
    draws = model.sample(n)
    torch.manual_seed(1)
    px = model.likelihood(model.sample_latent(n))  # the draws' own latents
    expected = px.variance.mean(0) + px.mean.var(0)
    torch.testing.assert_close(draws.var(0), expected, rtol=0.03, atol=0)
    torch.manual_seed(1)
    torch.testing.assert_close(model.sample(n, noise=False), px.mean)


def test_sampling_prior_fitted_to_the_codes_replaces_the_standard_normal():
    """Codes in two tight clusters at (3, 3) (a quarter) and (-3, 0): z drawn after the fit
    follows them; before it, N(0, I); ``sampling_prior="normal"`` (or no components) keeps N(0, I)."""
    import pyro.distributions as dist

    class CodeGuide:  # q(z | x): a narrow normal around the code written in the window's first step
        def distribution(self, x, mask=None):
            return dist.Normal(x[:, 0, :2], 0.05).to_event(1)

    rng = np.random.default_rng(0)
    codes = np.where(rng.random((800, 1)) < 0.25, [3.0, 3.0], [-3.0, 0.0])
    x = np.zeros((800, T, D), dtype=np.float32)
    x[:, 0, :2] = codes
    torch.manual_seed(0)
    model = TimeVAE(D, T, 2, (4,), sampling_prior="mixture", prior_components=2)
    before = model.sample_latent(4000)
    assert abs(float(before.mean())) < 0.1 and abs(float(before.std()) - 1) < 0.1
    assert model.fit_sampling_prior(x, CodeGuide())
    z = model.sample_latent(4000).numpy()
    upper = z[:, 0] > 0
    assert abs(upper.mean() - 0.25) < 0.03
    np.testing.assert_allclose(z[upper].mean(0), [3, 3], atol=0.02)
    np.testing.assert_allclose(z[~upper].mean(0), [-3, 0], atol=0.02)
    assert z.std(0).min() > 1  # the clusters' spread, not a single point
    assert model.sample(5).shape == (5, T, D)
    for plain in (TimeVAE(D, T, 2, (4,), sampling_prior="normal"),
                  TimeVAE(D, T, 2, (4,), sampling_prior="mixture", prior_components=0)):
        assert not plain.fit_sampling_prior(x, CodeGuide())
        assert plain.sampling_prior is None and abs(float(plain.sample_latent(4000).mean())) < 0.1
    with pytest.raises(ValueError, match="prior_components"):
        TimeVAE(D, T, 2, (4,), prior_components=-1)
    with pytest.raises(ValueError, match="sampling prior"):
        TimeVAE(D, T, 2, (4,), sampling_prior="flow")
    few = TimeVAE(D, T, 2, (4,), sampling_prior="mixture", prior_components=10)
    assert not few.fit_sampling_prior(x[:99], CodeGuide()) and not bool(few.prior_fitted)  # 10 per component


class PosteriorGuide:
    """q(z | x) = N(code, diag(scale^2)), the code and its scale written in the window's first step."""

    def distribution(self, x, mask=None):
        import pyro.distributions as dist

        return dist.Normal(x[:, 0, :2], x[:, 1, :2]).to_event(1)


def _coded_windows(codes, scales):
    x = np.zeros((len(codes), T, D), dtype=np.float32)
    x[:, 0, :2], x[:, 1, :2] = codes, scales
    return x


def test_aggregate_sampling_prior_is_the_mixture_of_the_training_posteriors():
    """The default sampling prior: z ~ (1/N) sum_i q(z | x_i). Two posteriors N((3, 3), 0.1^2 I) and
    N((-3, 0), diag(0.5^2, 0.2^2)) over 600 windows (a quarter the first): the draws hold each
    component's weight, mean and spread, and a reloaded state dict draws the same."""
    first = np.random.default_rng(0).random(600) < 0.25
    codes = np.where(first[:, None], [3.0, 3.0], [-3.0, 0.0])
    scales = np.where(first[:, None], [0.1, 0.1], [0.5, 0.2])
    torch.manual_seed(0)
    model = TimeVAE(D, T, 2, (4,))
    assert model.sampling_prior_kind == "aggregate"
    assert model.fit_sampling_prior(_coded_windows(codes, scales), PosteriorGuide())
    assert int(model.posterior_count) == 600
    z = model.sample_latent(20_000).numpy()
    upper = z[:, 0] > 0
    assert abs(upper.mean() - first.mean()) < 0.015
    np.testing.assert_allclose(z[upper].mean(0), [3, 3], atol=0.01)
    np.testing.assert_allclose(z[upper].std(0), [0.1, 0.1], rtol=0.05)
    np.testing.assert_allclose(z[~upper].mean(0), [-3, 0], atol=0.02)
    np.testing.assert_allclose(z[~upper].std(0), [0.5, 0.2], rtol=0.05)
    reloaded = TimeVAE(D, T, 2, (4,))
    reloaded.load_state_dict(model.state_dict())
    torch.manual_seed(1)
    again = reloaded.sample_latent(50)
    torch.manual_seed(1)
    assert torch.equal(again, model.sample_latent(50))


def test_aggregate_sampling_prior_keeps_a_random_subset_of_many_windows():
    n = AGGREGATE_WINDOWS + 500
    codes = np.stack([np.arange(n), np.zeros(n)], 1).astype(np.float32)
    model = TimeVAE(D, T, 2, (4,))
    assert model.fit_sampling_prior(_coded_windows(codes, np.full((n, 2), 1e-3)), PosteriorGuide())
    kept = model.posterior_loc[:, 0].numpy()
    assert int(model.posterior_count) == AGGREGATE_WINDOWS and len(np.unique(kept)) == AGGREGATE_WINDOWS
    assert kept.max() > AGGREGATE_WINDOWS  # not the first windows only


def _explicit_covariance(tril, rho, window):
    """Cov of vec(e) (T D) for e_t = rho e_(t-1) + v_t, e_0 = v_0 / sqrt(1 - rho^2), v ~ N(0, L L^T):
    e = M v with M's (t, s) block diag(rho^(t - s)) (over sqrt(1 - rho^2) when s = 0)."""
    d = len(rho)
    m = torch.zeros(window * d, window * d, dtype=torch.float64)
    for t in range(window):
        for s in range(t + 1):
            coef = rho ** (t - s) / ((1 - rho ** 2).sqrt() if s == 0 else 1.0)
            m[t * d:(t + 1) * d, s * d:(s + 1) * d] = torch.diag(coef)
    return m @ torch.block_diag(*[tril @ tril.T] * window) @ m.T


def test_correlated_noise_is_the_exact_gaussian_over_the_window():
    """Summed over a window, the per-entry log-probabilities equal the log-density of the whole
    (T D)-vector under its explicit covariance; draws have that covariance; every step has the
    stationary variance (L L^T)_dd / (1 - rho_d^2)."""
    torch.manual_seed(0)
    window, d = 6, 3
    a = torch.randn(d, d, dtype=torch.float64)
    tril = torch.linalg.cholesky(a @ a.T + 0.5 * torch.eye(d, dtype=torch.float64))
    rho = torch.tensor([0.5, -0.3, 0.95], dtype=torch.float64)
    loc = torch.randn(4, window, d, dtype=torch.float64)
    noise = CorrelatedNoiseGaussian(loc, tril, rho)
    cov = _explicit_covariance(tril, rho, window)
    x = loc + torch.randn_like(loc)
    reference = torch.distributions.MultivariateNormal(loc.reshape(4, -1), cov).log_prob(x.reshape(4, -1))
    torch.testing.assert_close(noise.log_prob(x).sum((-1, -2)), reference)
    torch.testing.assert_close(noise.window_covariance(), cov)
    torch.testing.assert_close(noise.variance[0], cov.diagonal().reshape(window, d))
    draws = (noise.sample((40_000,))[:, 0] - loc[0]).reshape(40_000, -1)
    scale = cov.diagonal().sqrt()
    assert ((torch.cov(draws.T) - cov) / scale[:, None] / scale[None]).abs().max() < 0.03


def test_correlated_likelihood_learns_the_noise_correlation_and_memory():
    """x_ntd = c_d L_n + e_ntd with e a known noise process (feature correlation 0.8, AR(1)
    coefficients 0.7 and 0): the fit recovers the correlation and each feature's rho."""
    rng = np.random.default_rng(0)
    n, window = 1024, 16
    corr, rho, sd = 0.8, np.array([0.7, 0.0]), np.array([1.0, 20.0])
    v = rng.multivariate_normal([0, 0], [[1, corr], [corr, 1]], size=(n, window)) * sd
    e = np.empty_like(v)
    e[:, 0] = v[:, 0] / np.sqrt(1 - rho ** 2)
    for t in range(1, window):
        e[:, t] = rho * e[:, t - 1] + v[:, t]
    x = (np.array([3.0, 100.0]) * rng.normal(size=(n, 1, 1)) + e).astype(np.float32)
    torch.manual_seed(0)
    model, guide = pair(TimeVAE(2, window, 2, (8, 16), likelihood="gaussian-correlated", noise_warmup=80),
                        "amortized", (window, 2))
    fit(model, guide, x, epochs=150, batch_size=128, lr=3e-3, progress=False, seed=0)
    tril, learned_rho = (t.detach().numpy() for t in model.noise_process())
    cov = tril @ tril.T
    assert abs(cov[0, 1] / np.sqrt(cov[0, 0] * cov[1, 1]) - corr) < 0.02
    np.testing.assert_allclose(learned_rho, rho, atol=0.05)
    np.testing.assert_allclose(np.sqrt(np.diag(cov)) * model.input_scaler.span.numpy(), sd, rtol=0.05)


def test_correlated_likelihood_refuses_what_it_cannot_model():
    with pytest.raises(ValueError, match="does not combine"):
        TimeVAE(D, T, K, (4,), likelihood="gaussian-correlated", ar_order=1)
    assert TimeVAE(D, T, K, (4,), ar_order=1).noise_model == "gaussian-feature"  # unset: the blocks take the memory
    model = TimeVAE(D, T, K, (4,), likelihood="gaussian-correlated")
    mask = torch.ones(8, T, D, dtype=torch.bool)
    mask[0, 0, 0] = False
    with pytest.raises(ValueError, match="complete windows"):
        model.initialize(torch.randn(8, T, D), mask)

