"""The HMM's amortized guide: the whole chain as one site, started at the exact posterior (issue 16).

References are independent of the code under test: every path of a short chain enumerated by
hand, and the EM fit (itself checked against hmmlearn in tests/models/test_hmm.py).
"""
import itertools
import numpy as np
import pytest
import torch

from dlvm.experiments.data.sets import log_returns, sp500_index
from dlvm.guides import markov, pair
from dlvm.inference import StepSchedule, fit
from dlvm.models import GaussianHMM
from dlvm.models.hmm import MarkovChain


def path_log_probs(first, steps, paths):
    """log q(path) of every path by the product of its factors, one step at a time."""
    lf, ls = first.log_softmax(-1), steps.log_softmax(-1)
    return torch.stack([lf[p[0]] + sum(ls[t - 1, p[t - 1], p[t]] for t in range(1, len(p))) for p in paths])


def test_markov_chain_log_prob_and_sampler_match_the_enumerated_chain():
    torch.manual_seed(0)
    k, length = 3, 4
    first, steps = torch.randn(2, k).double(), torch.randn(2, length - 1, k, k).double()
    chain = MarkovChain(first, steps)
    paths = list(itertools.product(range(k), repeat=length))
    expected = path_log_probs(first[1], steps[1], paths)
    assert torch.allclose(expected.exp().sum(), torch.tensor(1.0).double())
    values = torch.tensor(paths)[:, None].expand(-1, 2, -1)
    torch.testing.assert_close(chain.log_prob(values)[:, 1], expected)
    draws = chain.sample((40_000,))[:, 1]
    assert draws.shape == (40_000, length)
    counts = torch.zeros(len(paths)).double()
    index = {p: i for i, p in enumerate(paths)}
    for row in draws.tolist():
        counts[index[tuple(row)]] += 1
    p = expected.exp()
    sd = (p * (1 - p) / draws.shape[0]).sqrt()
    assert ((counts / draws.shape[0] - p).abs() <= 5 * sd + 1e-4).all()


def tiny_hmm(length=5):
    torch.manual_seed(1)
    model = GaussianHMM(1, 2, "diag").double()
    x = torch.randn(2, length, 1).double() * 2
    model.initialize(x)
    return model, x


def test_pairwise_posterior_matches_enumeration():
    model, x = tiny_hmm()
    start, pairs = model.pairwise_posterior(x)
    log_pi, log_a = model.initial.log().detach(), model.transition.log().detach()
    emission = model.gaussians.log_prob(x, None).detach()
    for n in range(x.shape[0]):
        paths = list(itertools.product(range(2), repeat=x.shape[1]))
        joint = torch.stack([log_pi[p[0]] + emission[n, 0, p[0]] + sum(
            log_a[p[t - 1], p[t]] + emission[n, t, p[t]] for t in range(1, len(p))) for p in paths])
        weights = (joint - joint.logsumexp(0)).exp()
        expected = torch.zeros(x.shape[1] - 1, 2, 2).double()
        for w, p in zip(weights, paths):
            for t in range(1, len(p)):
                expected[t - 1, p[t - 1], p[t]] += w
        torch.testing.assert_close(pairs[n], expected)
        torch.testing.assert_close(start[n], expected[0].sum(-1))
        torch.testing.assert_close(model.posterior(x)[n, 1:], expected.sum(-2))


def sp500():
    return log_returns(sp500_index(), percent=True).to_numpy()[:, None].copy()


def two_regimes(length, seed=0):
    """A two-state series whose regimes last ~20 steps: calm (sd 0.5) and turbulent (sd 2)."""
    model = GaussianHMM(1, 2, "diag").double()
    with torch.no_grad():
        model.initial = torch.tensor([0.5, 0.5]).double()
        model.transition = torch.tensor([[0.95, 0.05], [0.05, 0.95]]).double()
        model.gaussians.set_moments(torch.tensor([[0.1], [-0.3]]).double(), torch.tensor([[0.25], [4.0]]).double())
    torch.manual_seed(seed)
    return model.sample(length)[0].numpy()


def test_warm_start_puts_the_guide_at_the_exact_posterior():
    x = torch.tensor(two_regimes(400))[None]
    model = GaussianHMM(1, 2).double()
    trained, guide = pair(model, "amortized", (400, 1), hidden=(8,))
    guide.double()
    model.initialize(x)
    start, pairs = model.pairwise_posterior(x)
    with torch.no_grad():
        first, moves = guide.logits(x)
        cross = -((start * first.log_softmax(-1)).sum() + (pairs * moves.log_softmax(-1)).sum())
        conditional = pairs / pairs.sum(-1, keepdim=True).clamp(min=1e-300)
        entropy = -((start * start.clamp(min=1e-300).log()).sum() + (pairs * conditional.clamp(min=1e-300).log()).sum())
    assert float(cross - entropy) / 400 < 1e-3  # KL(p(z | x) || q(z | x)) per step


def test_the_guide_declares_its_step_schedule_at_em_only(monkeypatch):
    """Started at EM's fit the guide declares shrinking steps (decay ``STEP_DECAY``); from the
    k-means++ start (no EM iterations) it declares none."""
    x = torch.tensor(two_regimes(200))[None]
    for iterations, declared in ((markov.CHAIN_EM_START_ITERATIONS, StepSchedule(markov.STEP_DECAY)), (0, None)):
        monkeypatch.setattr(markov, "CHAIN_EM_START_ITERATIONS", iterations)
        model = GaussianHMM(1, 2).double()
        trained, guide = pair(model, "amortized", (200, 1), hidden=(8,))
        guide.double()
        model.initialize(x)
        assert guide.step_schedule == declared


def em_and_amortized(x, epochs, seed=0, hidden=(32,)):
    """(start, amortized, exact marginal, EM) exact log-likelihoods per step from one k-means++
    start: the amortized guide's fit (``tracegraph``), the exact marginal under the same Adam
    schedule (``epochs`` steps at the default learning rate) and EM to convergence."""
    x = torch.as_tensor(x)[None]
    torch.manual_seed(seed)
    model = GaussianHMM(x.shape[-1], 2).double()
    trained, guide = pair(model, "amortized", tuple(x.shape[1:]), hidden=hidden)
    guide.double()
    model.initialize(x)
    start = {name: value.clone() for name, value in model.state_dict().items()}
    per_step = lambda m: float(m.log_marginal(x).detach().sum()) / x.shape[1]  # noqa: E731
    begin = per_step(model)
    fit(trained, guide, x, elbo="tracegraph", epochs=epochs, initialize=False, seed=seed, progress=False)
    marginal = GaussianHMM(x.shape[-1], 2).double()
    marginal.load_state_dict(start)
    fit(*pair(marginal, "exact", tuple(x.shape[1:])), x, epochs=epochs, initialize=False, seed=seed, progress=False)
    reference = GaussianHMM(x.shape[-1], 2).double()
    reference.load_state_dict(start)
    for _ in range(300):
        reference.em_step(x)
    return begin, per_step(model), per_step(marginal), per_step(reference)


def test_amortized_guide_follows_the_exact_gradient_on_a_short_series(monkeypatch):
    """From the k-means++ start (no EM iterations first), with z drawn from the guide, the model
    climbs as it does on the exact marginal under the same Adam schedule (measured: start -1.534,
    amortized -1.476, exact marginal -1.472, EM -1.265 per step): the guide is good; 60 Adam
    steps are what stop short of EM. With the default start (EM iterations) it ends at EM."""
    begin, amortized, marginal, em = em_and_amortized(two_regimes(300), epochs=60, hidden=(8,))
    assert em - amortized <= 0.01, (begin, amortized, marginal, em)
    monkeypatch.setattr(markov, "CHAIN_EM_START_ITERATIONS", 0)
    begin, amortized, marginal, em = em_and_amortized(two_regimes(300), epochs=60, hidden=(8,))
    assert amortized <= em + 1e-6
    assert amortized - begin >= 0.8 * (marginal - begin), (begin, amortized, marginal, em)
    assert abs(amortized - marginal) <= 0.02, (begin, amortized, marginal, em)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(3))
def test_amortized_guide_on_the_sp500_series(seed):
    """S&P 500 daily returns (8,312 steps), defaults (100 steps of Adam at 1e-2): within 0.05 nats
    per step of EM on every seed. Before the guide's warm start moved the model by a few EM
    iterations (``EM_START_ITERATIONS``) it ended 0.08 short (0.04 on the exact marginal under the
    same schedule) and collapsed near step 360. SVI loses a little of what the start gave (measured
    0.014 on seeds 0-2, 0.056 without the shrinking steps of the guide's ``step_schedule``)."""
    begin, amortized, marginal, em = em_and_amortized(sp500(), epochs=100, seed=seed)
    assert em - amortized <= 0.05, (begin, amortized, marginal, em)
    assert amortized >= begin - 0.025, (begin, amortized, marginal, em)


def test_model_with_one_chain_site_trains_on_windows():
    """Several sequences (N = 8): one site z of shape (8, 12), the baseline shaped like the cost."""
    x = two_regimes(96).reshape(8, 12, 1)
    model = GaussianHMM(1, 2, "diag").double()
    trained, guide = pair(model, "amortized", (12, 1), hidden=(8,))
    guide.double()
    result = fit(trained, guide, x, elbo="tracegraph", epochs=3, progress=False)
    assert np.isfinite(result.history.elbo).all()
    assert model.latent_sites == ("z",)
