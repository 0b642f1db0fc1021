"""Gaussian HMM against hmmlearn: forward likelihood, posteriors, Viterbi, fitted likelihood, regimes."""
import numpy as np
import pytest
import torch
from hmmlearn.hmm import GaussianHMM as Reference
from scipy.stats import norm

from dlvm.experiments.studies.regimes import returns
from dlvm.guides import pair
from dlvm.inference import evaluate, fit, make_elbo
from dlvm.models import MODELS, GaussianHMM, build_model


def random_reference(k, d, covariance, seed):
    rng = np.random.default_rng(seed)
    ref = Reference(k, covariance_type=covariance)
    ref.n_features = d
    ref.startprob_ = rng.dirichlet(np.ones(k))
    ref.transmat_ = rng.dirichlet(np.ones(k) * 2, size=k) + np.eye(k) * 3
    ref.transmat_ /= ref.transmat_.sum(-1, keepdims=True)
    ref.means_ = rng.standard_normal((k, d)) * 2
    if covariance == "full":
        a = rng.standard_normal((k, d, d))
        ref.covars_ = a @ a.transpose(0, 2, 1) + np.eye(d)
    else:
        ref.covars_ = rng.uniform(0.5, 2.0, (k, d))
    return ref


def copy_parameters(model, ref):
    model.initial = torch.tensor(ref.startprob_)
    model.transition = torch.tensor(ref.transmat_)
    model.gaussians.means = torch.tensor(ref.means_)
    covars = torch.tensor(ref.covars_)  # hmmlearn returns full (K, D, D) matrices
    if model.gaussians.full:
        model.gaussians.scale_tril = torch.linalg.cholesky(covars - 1e-6 * torch.eye(covars.shape[-1]))
    else:
        model.gaussians.variances = torch.diagonal(covars, dim1=-2, dim2=-1)  # diag: used as given


@pytest.mark.parametrize("covariance,d", [("full", 2), ("diag", 3), ("full", 1)])
def test_forward_posterior_and_viterbi_match_hmmlearn(covariance, d):
    ref = random_reference(3, d, covariance, seed=d)
    x, _ = ref.sample(300, random_state=1)
    model = GaussianHMM(d, 3, covariance).double()
    copy_parameters(model, ref)
    xt = torch.tensor(x)[None]
    assert model.log_marginal(xt).item() == pytest.approx(ref.score(x), abs=1e-6)
    np.testing.assert_allclose(model.posterior(xt)[0].numpy(), ref.predict_proba(x), atol=1e-8)
    _, path = ref.decode(x, algorithm="viterbi")
    np.testing.assert_array_equal(model.viterbi(xt)[0].numpy(), path)


def test_several_sequences_and_padding():
    ref = random_reference(2, 2, "diag", seed=5)
    a, _ = ref.sample(40, random_state=2)
    b, _ = ref.sample(25, random_state=3)
    model = GaussianHMM(2, 2, "diag").double()
    copy_parameters(model, ref)
    x = torch.zeros(2, 40, 2, dtype=torch.float64)
    x[0], x[1, :25] = torch.tensor(a), torch.tensor(b)
    mask = torch.ones(2, 40, 2, dtype=torch.bool)
    mask[1, 25:] = False  # padding at the end of the shorter sequence
    total = model.log_marginal(x, mask).sum().item()
    assert total == pytest.approx(ref.score(np.concatenate([a, b]), lengths=[40, 25]), abs=1e-6)
    np.testing.assert_array_equal(model.observations_per_row(x, mask).numpy(), [40, 25])


def test_traceenum_loss_is_the_exact_negative_log_likelihood():
    ref = random_reference(2, 1, "full", seed=0)
    model = GaussianHMM(1, 2).double()
    copy_parameters(model, ref)
    x = torch.tensor(np.stack([ref.sample(12, random_state=s)[0] for s in range(4)]))
    trained, guide = pair(model, "enum", (12, 1))
    loss = make_elbo("traceenum").loss(trained, guide, x)
    assert loss == pytest.approx(-model.log_marginal(x).sum().item(), rel=1e-10)
    result = evaluate(trained, guide, x)
    expected = [ref.score(series) for series in x.numpy()]  # hmmlearn's forward algorithm
    np.testing.assert_allclose(result.elbo.numpy(), expected, rtol=1e-9)
    np.testing.assert_allclose(result.log_likelihood.numpy(), expected, rtol=1e-9)


@pytest.fixture(scope="module")
def sp500_fits():
    r = returns(quick=True).to_numpy()[:, None].copy()
    best = None
    for seed in range(3):
        candidate = Reference(2, covariance_type="full", n_iter=500, tol=1e-6, random_state=seed).fit(r)
        if best is None or candidate.score(r) > best.score(r):
            best = candidate
    data = MODELS["hmm"].prepare(r)
    model = build_model("hmm", data.shape[1:], {"states": 2}).double()
    trained, guide = pair(model, "exact", data.shape[1:])
    fit(trained, guide, data, optimizer="lbfgs", epochs=100, progress=False)
    return r, best, model


def test_fitted_likelihood_reaches_hmmlearn(sp500_fits):
    r, ref, model = sp500_fits
    ours = model.log_marginal(torch.tensor(r)[None]).item() / len(r)
    assert ours >= ref.score(r) / len(r) - 1e-3


def test_regimes_agree_with_hmmlearn(sp500_fits):
    r, ref, model = sp500_fits
    ours = model.viterbi(torch.tensor(r)[None])[0].numpy()
    theirs = ref.predict(r)
    agreement = max((ours == theirs).mean(), (ours != theirs).mean())  # two labels: align by flipping
    assert agreement >= 0.99


def test_sample_and_durations():
    torch.manual_seed(0)
    model = GaussianHMM(1, 2, "diag").double()
    model.transition = torch.tensor([[0.95, 0.05], [0.2, 0.8]], dtype=torch.float64)
    x, z = model.sample(5000, n=2, return_states=True)
    assert x.shape == (2, 5000, 1) and z.shape == (2, 5000)
    torch.testing.assert_close(model.expected_durations(), torch.tensor([20.0, 5.0], dtype=torch.float64))
    stationary = model.stationary_distribution()
    torch.testing.assert_close(stationary, torch.tensor([0.8, 0.2], dtype=torch.float64))
    assert (z == 0).double().mean().item() == pytest.approx(0.8, abs=0.05)


def test_bad_input():
    with pytest.raises(ValueError, match="number of states"):
        GaussianHMM(1, 0)
    model = GaussianHMM(1, 2).double()
    with pytest.raises(ValueError, match=r"sequences of shape \(N, T, D\)"):
        model.log_marginal(torch.zeros(10, 1, dtype=torch.float64))
    with pytest.raises(ValueError, match="3 states but only 2 rows"):
        GaussianHMM(1, 3).double().initialize(torch.zeros(1, 2, 1, dtype=torch.float64))


def test_constant_series_gives_finite_parameters():
    x = np.zeros((1, 200, 1))
    model = GaussianHMM(1, 2).double()
    trained, guide = pair(model, "exact", (200, 1))
    fit(trained, guide, x, optimizer="lbfgs", epochs=5, progress=False)
    values = torch.cat([p.detach().flatten() for p in model.parameters()])
    assert torch.isfinite(values).all()


def test_masked_missing_values_in_a_series():
    r = returns(quick=True).to_numpy()[:300, None].copy()
    r[[10, 50, 51], 0] = np.nan
    data = MODELS["hmm"].prepare(r)
    model = GaussianHMM(1, 2).double()
    trained, guide = pair(model, "exact", data.shape[1:])
    fit(trained, guide, data, mask=~np.isnan(data), optimizer="lbfgs", epochs=10, progress=False)
    x, mask = torch.tensor(np.nan_to_num(data)), torch.tensor(~np.isnan(data))
    with torch.no_grad():
        total = model.log_marginal(x, mask).item()
        marginals = model.posterior(x, mask).numpy()[0]
    expected, smoothed = forward_backward_by_hand(model, r[:, 0])
    assert total == pytest.approx(expected, rel=1e-10)
    np.testing.assert_allclose(marginals, smoothed, atol=1e-9)
    assert not np.allclose(marginals[50], marginals[49])  # a missing step is inferred from its neighbours


def forward_backward_by_hand(model, series):
    """log p(observed steps) and p(z_t | observed steps) of a 1-D series with NaN gaps, by the
    scaled forward-backward recursions in numpy (a missing step emits with likelihood 1)."""
    start, move = model.initial.detach().numpy(), model.transition.detach().numpy()
    means = model.gaussians.means.detach().numpy()[:, 0]
    sds = np.sqrt(model.covariances().detach().numpy()[:, 0, 0])
    emit = np.array([np.ones_like(means) if np.isnan(v) else norm.pdf(v, means, sds) for v in series])
    alpha, scale = np.zeros_like(emit), np.zeros(len(series))
    for t in range(len(series)):
        alpha[t] = (start if t == 0 else alpha[t - 1] @ move) * emit[t]
        scale[t] = alpha[t].sum()
        alpha[t] /= scale[t]
    beta = np.ones_like(emit)
    for t in range(len(series) - 2, -1, -1):
        beta[t] = move @ (emit[t + 1] * beta[t + 1]) / scale[t + 1]
    return np.log(scale).sum(), alpha * beta


def test_amortized_markov_guide_trains_with_tracegraph():
    ref = random_reference(2, 1, "diag", seed=3)
    ref.means_ = np.array([[-2.0], [2.0]])
    x = np.stack([ref.sample(8, random_state=s)[0] for s in range(32)])
    model = GaussianHMM(1, 2, "diag").double()
    trained, guide = pair(model, "amortized", (8, 1), hidden=(8,), baseline="decaying")
    guide.double()
    result = fit(trained, guide, x, elbo="tracegraph", lr=0.05, epochs=40, progress=False)
    ev = evaluate(trained, guide, x, num_samples=20)
    assert result.history.elbo.iloc[-5:].mean() > result.history.elbo.iloc[:5].mean()
    # the structured guide gets close to the exact posterior: a small ELBO gap per sequence
    assert 0 <= ev.summary()["gap"] < 1.0
