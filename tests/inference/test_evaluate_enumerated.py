"""Evaluation of a guide that leaves a discrete latent to enumeration."""
import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.nn import PyroModule, PyroParam
from scipy.stats import norm
from torch.distributions import constraints

from dlvm.guides import ExactGuide
from dlvm.inference import evaluate, log_weights
from dlvm.inference.evaluate import enumerated_sites
from dlvm.models.base import data_plate


class CoinThenGaussian(PyroModule):
    """z ~ Bernoulli(p), x | z ~ N(2 z, 1): log p(x) is known in closed form."""

    def __init__(self, marginal=True):
        super().__init__()
        self.p = PyroParam(torch.tensor(0.3, dtype=torch.float64), constraint=constraints.unit_interval)
        if marginal:
            self.log_marginal = self._log_marginal

    def forward(self, x, mask=None, size=None):
        with data_plate(x, size):
            z = pyro.sample("z", dist.Bernoulli(self.p), infer={"enumerate": "parallel"})
            pyro.sample("x", dist.Normal(2 * z, 1.0).to_event(1), obs=x)

    def _log_marginal(self, x, mask=None):
        normal = dist.Normal(x.new_zeros(()), 1.0)
        return torch.logaddexp(
            (1 - self.p).log() + normal.log_prob(x).sum(-1), self.p.log() + normal.log_prob(x - 2).sum(-1)
        )


def test_enumerated_site_is_summed_out_not_sampled():
    x = torch.linspace(-2, 4, 7, dtype=torch.float64).unsqueeze(-1)
    model = CoinThenGaussian()
    # log p(x) = log(0.7 N(x; 0, 1) + 0.3 N(x; 2, 1)), by hand with scipy
    grid = x.squeeze(-1).numpy()
    expected = torch.tensor(np.log(0.7 * norm.pdf(grid, 0, 1) + 0.3 * norm.pdf(grid, 2, 1)))
    torch.testing.assert_close(log_weights(model, ExactGuide(), x).detach(), expected)
    result = evaluate(model, ExactGuide(), x)
    torch.testing.assert_close(result.elbo, expected)
    torch.testing.assert_close(result.iwae, expected)
    torch.testing.assert_close(result.log_likelihood, expected)


def test_enumeration_without_an_exact_marginal_is_a_clear_error():
    model = CoinThenGaussian(marginal=False)
    x = torch.zeros(3, 1, dtype=torch.float64)
    with pytest.raises(ValueError, match="leaves z to enumeration"):
        log_weights(model, ExactGuide(), x)


def test_enumerated_sites_lists_only_sites_the_guide_lacks():
    model = CoinThenGaussian()
    x = torch.zeros(3, 1, dtype=torch.float64)
    trace = pyro.poutine.trace(model).get_trace(x)
    guide_trace = pyro.poutine.trace(ExactGuide()).get_trace(x)
    assert enumerated_sites(trace, guide_trace) == ["z"]
