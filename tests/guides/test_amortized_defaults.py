"""Amortized guides with default settings reach the exact optimum (issue 16).

`dlvm fit gmm --guide amortized --elbo tracegraph` (an MLP categorical encoder trained by
score-function gradients) used to collapse to one dominant component; with its warm start from
the model (standardised inputs, logits fitted to the responsibilities, baseline fitted to log p(x))
it reaches the enumerated (exact) fit within 0.05 nats per row. FA / PPCA with the amortized
Gaussian guide stay within 0.02 nats per row of the maximum-likelihood optimum.
"""
import json

import numpy as np
import pytest
import torch
from sklearn.datasets import load_iris
from sklearn.decomposition import PCA
from sklearn.decomposition import FactorAnalysis as ReferenceFA

from dlvm.experiments.cli import main
from dlvm.experiments.data.sets import log_returns, sp500_index
from dlvm.guides import pair
from dlvm.inference import fit
from dlvm.models import FactorAnalysis, GaussianHMM


def cli_log_likelihood(tmp_path, model, x, *flags):
    data, out = tmp_path / "x.npy", tmp_path / "run"
    np.save(data, x)
    argv = ["fit", model, "--data", data, "--out", out, "--quiet", "--overwrite", "--iwae-samples", 2, *flags]
    assert main([str(a) for a in argv]) == 0
    return json.loads((out / "metrics.json").read_text())["log_likelihood"]


def four_in_five_dimensions(n=600, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(4, 5)) * 3
    labels = rng.integers(0, 4, n)
    tilts = rng.normal(size=(4, 5, 5)) * 0.5
    return centres[labels] + np.einsum("nij,nj->ni", tilts[labels], rng.normal(size=(n, 5)))


def sp500():
    return log_returns(sp500_index(), percent=True).to_numpy()[:, None].copy()


@pytest.mark.parametrize("name,data,k,seeds", [
    ("iris", lambda: load_iris().data, 3, range(3)),
    ("synthetic 5-D", four_in_five_dimensions, 4, range(3)),
    ("sp500", sp500, 2, range(3)),
    pytest.param("sp500, ten seeds", sp500, 2, range(10), marks=pytest.mark.slow),
    pytest.param("synthetic 5-D, ten seeds", four_in_five_dimensions, 4, range(10), marks=pytest.mark.slow),
])
def test_amortized_categorical_guide_reaches_the_enumerated_fit(tmp_path, name, data, k, seeds):
    """Every seed, not a typical one: seeds 0 and 3 of the 5-D set fell 0.08 and 0.41 short
    before the encoder was fitted closely to the responsibilities; seeds 2 and 4 of S&P 0.058 and
    0.055 before the warm start moved the model a few EM iterations from its k-means start (which
    is 0.18 below the optimum there: 100 Adam steps did not cover the way)."""
    x = data()
    exact = cli_log_likelihood(tmp_path, "gmm", x, "--components", k)
    gaps = {seed: exact - cli_log_likelihood(tmp_path, "gmm", x, "--components", k, "--guide", "amortized",
                                             "--elbo", "tracegraph", "--seed", seed) for seed in seeds}
    assert max(gaps.values()) <= 0.05, gaps


def low_rank(n, d, k, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, k)) @ rng.standard_normal((d, k)).T
    return x + rng.standard_normal((n, d)) * np.sqrt(rng.uniform(0.5, 2.0, size=d))


@pytest.mark.parametrize("n,d,k", [(2000, 30, 5), pytest.param(10_000, 100, 10, marks=pytest.mark.slow)])
def test_amortized_factor_models_stay_at_the_optimum(tmp_path, n, d, k):
    x = low_rank(n, d, k)
    fa = cli_log_likelihood(tmp_path, "fa", x, "--latent-dim", k, "--guide", "amortized")
    assert fa >= ReferenceFA(k, tol=1e-10, max_iter=10_000, random_state=0).fit(x).score(x) - 0.02
    ppca = cli_log_likelihood(tmp_path, "ppca", x, "--latent-dim", k, "--guide", "amortized")
    assert ppca >= PCA(k).fit(x).score(x) - 0.02


def test_encoder_starts_at_the_exact_posterior():
    """The warm start of a linear encoder recovers the exact posterior of FA (independent formula:
    Gaussian conditioning with the model covariance)."""
    x = torch.tensor(low_rank(500, 8, 2))
    model = FactorAnalysis(8, 2).double()
    _, guide = pair(model, "amortized", (8,), guide_covariance="full")
    guide.double()
    model.initialize(x)
    with torch.no_grad():
        cov = model.covariance()
        gain = model.loadings.T @ torch.linalg.inv(cov)
        mean, tril = guide.moments(x)
    torch.testing.assert_close(mean, (x - model.loc) @ gain.T, atol=1e-4, rtol=1e-4)
    expected = torch.eye(2, dtype=x.dtype) - gain @ model.loadings
    torch.testing.assert_close(tril[0] @ tril[0].T, expected, atol=1e-5, rtol=1e-4)


def test_markov_guide_trains_on_one_sequence():
    """One series (N = 1): the neural baseline has the shape TraceGraph gives the cost."""
    x = log_returns(sp500_index(), percent=True).to_numpy()[:40, None][None].copy()
    model = GaussianHMM(1, 2).double()
    trained, guide = pair(model, "amortized", (40, 1), hidden=(8,))
    guide.double()
    result = fit(trained, guide, x, elbo="tracegraph", epochs=3, progress=False)
    assert np.isfinite(result.history.elbo).all()
