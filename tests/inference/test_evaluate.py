"""Evaluation bounds: ELBO <= IWAE-K <= log p(x), the gap of §6.4.4 measured."""
import numpy as np
import pytest
import torch

from dlvm.guides import ExactGuide, pair
from dlvm.inference import evaluate, fit
from dlvm.models import FactorAnalysis, Marginalized


@pytest.fixture(scope="module")
def fitted():
    """A fixed FA model (posterior correlation about -0.68) and 300 rows drawn from it."""
    model = FactorAnalysis(6, 2).double()
    model.loadings = torch.tensor(
        [[1.0, 0.8], [0.9, 0.2], [0.5, 1.0], [1.0, 1.0], [0.2, -0.3], [0.7, 0.4]], dtype=torch.float64
    )
    model.noise_variance = torch.full((6,), 0.7, dtype=torch.float64)
    model.loc = torch.zeros(6, dtype=torch.float64)
    for p in model.parameters():
        p.requires_grad_(False)  # train guides only
    torch.manual_seed(0)
    return model, model.sample(300)


def trained_guide(model, x, covariance):
    trained, guide = pair(model, "amortized", (6,), encoder="linear", guide_covariance=covariance)
    guide.double()
    fit(trained, guide, x, epochs=600, lr=0.05, lr_decay=0.992, num_particles=2, initialize=False,
        progress=False)
    return trained, guide


def test_exact_guide_evaluates_to_the_exact_log_likelihood(fitted):
    model, x = fitted
    result = evaluate(Marginalized(model), ExactGuide(), x, num_samples=10)
    torch.testing.assert_close(result.elbo, result.log_likelihood)
    assert result.num_samples == 1


def test_full_covariance_guide_closes_the_gap_diagonal_does_not(fitted):
    model, x = fitted
    full = evaluate(*trained_guide(model, x, "full"), x, num_samples=64).summary()
    diag = evaluate(*trained_guide(model, x, "diagonal"), x, num_samples=64).summary()
    assert 0 <= full["gap"] < 0.01
    assert diag["gap"] > 0.05  # the true posterior covariance is not diagonal here
    assert diag["elbo"] <= diag["log_likelihood"]


def test_iwae_increases_with_k_towards_the_exact_value(fitted):
    model, x = fitted
    trained, guide = pair(model, "amortized", (6,), encoder="linear")
    guide.double()
    fit(trained, guide, x, epochs=100, lr=0.05, initialize=False, progress=False)
    torch.manual_seed(0)
    bounds = [evaluate(trained, guide, x, num_samples=k).summary() for k in (1, 10, 100)]
    iwae = [b["iwae"] for b in bounds]
    exact = bounds[0]["log_likelihood"]
    assert iwae[0] < iwae[1] < iwae[2] <= exact + 1e-3
    assert exact - iwae[2] < (exact - iwae[0]) / 3


def test_bad_sample_count(fitted):
    model, x = fitted
    with pytest.raises(ValueError, match="at least 1"):
        evaluate(Marginalized(model), ExactGuide(), x, num_samples=0)
