"""Score-function estimators for a discrete z against the enumerated gradient (§6.4.3.1)."""
import numpy as np
import pytest
import torch
from pyro.infer import config_enumerate

from dlvm.guides import pair
from dlvm.inference import evaluate, fit, make_elbo
from dlvm.models import GaussianHMM, GaussianMixture


@pytest.fixture(scope="module")
def problem():
    torch.manual_seed(0)
    x = torch.cat([torch.randn(30, 1) - 1.5, torch.randn(30, 1) + 1.5]).double()
    model = GaussianMixture(1, 2, "diag").double()
    model.gaussians.means = torch.tensor([[-1.0], [1.0]], dtype=torch.float64)
    _, guide = pair(model, "amortized", (1,), hidden=(8,), baseline="decaying")
    guide.double()
    with torch.no_grad():
        guide.head.weight.normal_(0, 0.5)
    return model, guide, x


def gradient(elbo, model, guide, x, head):
    params = [model.gaussians.means, head.weight]
    for p in params:
        p.grad = None
    elbo.loss_and_grads(model, guide, x)
    return torch.cat([p.grad.flatten().clone() for p in params])


def test_score_function_gradients_agree_with_enumeration_and_baseline_reduces_variance(problem):
    model, guide, x = problem
    # the same ELBO with the guide's z summed out exactly: the expected gradient
    exact = gradient(make_elbo("traceenum"), model, config_enumerate(guide, "parallel"), x, guide.head)
    draws = {}
    for name in ("trace", "tracegraph"):
        elbo = make_elbo(name)
        draws[name] = torch.stack([gradient(elbo, model, guide, x, guide.head) for _ in range(400)])
    for name, g in draws.items():
        mean, stderr = g.mean(0), g.std(0) / np.sqrt(g.shape[0])
        assert ((mean - exact).abs() <= 4 * stderr + 1e-8).all(), (name, mean, exact, stderr)
    # the guide's parameters carry the score-function terms: the baseline shrinks their variance
    head = slice(2, None)
    assert draws["tracegraph"][:, head].var(0).sum() < 0.5 * draws["trace"][:, head].var(0).sum()


def test_bayesian_mixture_with_a_guide_on_globals():
    torch.manual_seed(0)
    x = torch.cat([torch.randn(150, 1) * 0.5 + 3, torch.randn(350, 1) - 1]).double()
    model = GaussianMixture(1, 2, "diag", bayesian=True).double()
    trained, guide = pair(model, "enum", (1,))
    fit(trained, guide, x, elbo="traceenum", lr=0.05, epochs=150, progress=False)
    median = guide.global_guide.median()
    weights = np.sort(median["weights"].detach().numpy())
    np.testing.assert_allclose(weights, [0.3, 0.7], atol=0.05)
    result = evaluate(trained, guide, x, num_samples=10)
    assert np.isfinite(result.summary()["elbo"]) and result.summary()["elbo"] < result.summary()["log_likelihood"] + 0.05


def test_bayesian_hmm_exact_guide_trains():
    torch.manual_seed(0)
    truth = GaussianHMM(1, 2, "diag").double()
    truth.gaussians.means = torch.tensor([[-2.0], [2.0]], dtype=torch.float64)
    x = truth.sample(200, n=2)
    model = GaussianHMM(1, 2, "diag", bayesian=True).double()
    trained, guide = pair(model, "exact", (200, 1))
    result = fit(trained, guide, x, lr=0.05, epochs=100, progress=False)
    assert result.history.elbo.iloc[-1] > result.history.elbo.iloc[0]
    means = np.sort(guide.global_guide.median()["base.gaussians.means"].detach().numpy().ravel())
    np.testing.assert_allclose(means, [-2, 2], atol=0.3)
