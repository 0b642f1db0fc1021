"""TimeGAN/TimeVAE data (exact preparation, sine recipes) and the TimeGAN scores."""
from importlib import resources

import numpy as np
import pandas as pd
import pytest
import torch

from dlvm.experiments.data import sets as datasets
from dlvm.experiments.reporting.timegan_metrics import (
    GRUScorers, correlational_scores, discriminative_scores, predictive_scores, scale_like, timegan_scores,
)


def test_timegan_stock_windows_match_an_independent_preparation():
    x = datasets.timegan_stocks()
    assert x.shape == (3661, 24, 6)
    with resources.as_file(datasets.DATA / "timegan" / "stock_data.csv.gz") as path:
        frame = pd.read_csv(path)
    assert list(frame.columns) == datasets.STOCK_COLUMNS and len(frame) == 3685
    newest_first = frame.iloc[::-1].reset_index(drop=True)
    scaled = (newest_first - newest_first.min()) / (newest_first.max() - newest_first.min() + 1e-7)
    assert np.allclose(x[0], scaled.iloc[:24].to_numpy(), atol=1e-12)
    assert np.allclose(x[-1], scaled.iloc[3660:3684].to_numpy(), atol=1e-12)
    assert x.min() == 0 and x.max() < 1


def test_timevae_sine_recipe_reproduces_the_shipped_files():
    generated = datasets.timevae_sine_windows().reshape(10_000, -1)
    order = np.argsort(generated[:, 0])
    for percent, n in ((2, 200), (5, 500), (10, 1000), (20, 2000)):
        shipped = datasets.timevae_sines(percent).reshape(n, -1)
        # each shipped window is one generated window (the files' selection and order are undocumented)
        at = np.clip(np.searchsorted(generated[order, 0], shipped[:, 0]), 0, len(order) - 1)
        candidates = np.stack([order[np.clip(at + k, 0, len(order) - 1)] for k in (-1, 0, 1)], 1)
        err = np.abs(generated[candidates] - shipped[:, None]).max(-1).min(-1)
        assert err.max() < 1e-12, percent
    assert datasets.stockv(2).shape == (54, 24, 6) and datasets.stockv(100).shape == (3919, 24, 6)
    with pytest.raises(ValueError, match="percent"):
        datasets.stockv(3)


def test_timegan_sines():
    x = datasets.timegan_sines(50, 24, 5, seed=3)
    assert x.shape == (50, 24, 5) and x.min() >= 0 and x.max() <= 1
    draws = np.random.RandomState(3).uniform(0, 0.1, size=(50, 5, 2))
    assert np.allclose(x[7, :, 2], (np.sin(draws[7, 2, 0] * np.arange(24) + draws[7, 2, 1]) + 1) / 2)


def test_block_gru_is_independent_gru_per_repeat():
    torch.manual_seed(0)
    net = GRUScorers(3, 2, repeats=3, every_step=True)
    x = torch.randn(4, 6, 9)
    out = net(x)
    for r in range(3):
        single = torch.nn.GRU(3, 2, batch_first=True)
        rows = torch.cat([torch.arange(2) + g * 6 + r * 2 for g in range(3)])
        with torch.no_grad():
            single.weight_ih_l0.copy_(net.rnn.weight_ih_l0[rows][:, r * 3:(r + 1) * 3])
            single.weight_hh_l0.copy_(net.rnn.weight_hh_l0[rows][:, r * 2:(r + 1) * 2])
            single.bias_ih_l0.copy_(net.rnn.bias_ih_l0[rows])
            single.bias_hh_l0.copy_(net.rnn.bias_hh_l0[rows])
        states, _ = single(x[..., r * 3:(r + 1) * 3])
        assert torch.allclose(out[..., r], states @ net.out_weight[r] + net.out_bias[r], atol=1e-6)
    out.sum().backward()  # gradients between blocks are masked
    grad = net.rnn.weight_hh_l0.grad
    assert grad[:2, 2:].abs().max() == 0 and grad[:2, :2].abs().max() > 0


@pytest.fixture(scope="module")
def stocks():
    x = datasets.timegan_stocks()
    return x[np.random.default_rng(0).permutation(len(x))[:1200]]


def test_discriminative_real_vs_real_and_vs_shuffled_noise(stocks):
    a, b = stocks[:600], stocks[600:]
    assert discriminative_scores(a, b, repeats=2, steps=300).mean() < 0.1
    noise = np.random.default_rng(1).permutation(stocks.reshape(-1)).reshape(stocks.shape)
    assert discriminative_scores(stocks, noise, repeats=2, steps=800).mean() > 0.3


def test_predictive_real_trained_beats_a_constant_predictor():
    # last feature = the first feature one step earlier: predictable from the inputs the GRU reads
    x = datasets.timegan_sines(600, 24, 6, seed=0)
    x[:, 1:, -1] = x[:, :-1, 0]
    trained = predictive_scores(x, x, repeats=2, steps=1000)
    real, _ = scale_like(x, x)
    target = real[:, 1:, -1]
    best_constant = np.abs(target - np.median(target)).mean()  # the best constant under L1
    assert trained.max() < 0.5 * best_constant
    # trained on constant windows it learns that constant: its error is the constant's error
    flat = predictive_scores(x, np.full_like(x, 0.5) * (x.min((0, 1)) + x.max((0, 1))), repeats=1, steps=400)
    assert flat[0] == pytest.approx(np.abs(target - 0.5).mean(), abs=0.03)


def test_scores_dict_and_bad_input(stocks):
    scores = timegan_scores(stocks[:200], stocks[200:400], repeats=2, discriminative_steps=5, predictive_steps=5)
    assert set(scores) == {"discriminative", "discriminative_std", "predictive", "predictive_std",
                           "correlational", "correlational_std"}
    with pytest.raises(ValueError, match="unknown metric"):
        timegan_scores(stocks, stocks, ["bogus"])
    with pytest.raises(ValueError, match="shape"):
        timegan_scores(stocks, stocks[:, :10])
    bad = stocks.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        timegan_scores(stocks, bad)
    with pytest.raises(ValueError, match="at least 2 features"):
        predictive_scores(stocks[..., :1], stocks[..., :1])


def test_correlational_score_matches_a_computation_by_hand():
    rng = np.random.default_rng(0)
    real = rng.normal(size=(50, 6, 3))
    real[..., 1] += 0.8 * real[..., 0]
    fake = rng.normal(size=(50, 6, 3)) * np.array([1.0, 5.0, 0.1])

    def by_hand(x):
        flat = x.reshape(-1, x.shape[-1])
        z = (flat - flat.mean(0)) / flat.std(0, ddof=1)
        return [np.mean(z[:, i] * z[:, j]) for i in range(3) for j in range(i + 1)]

    expected = sum(abs(a - b) for a, b in zip(by_hand(fake), by_hand(real))) / 10
    assert correlational_scores(real, fake, repeats=3) == pytest.approx([expected] * 3)
    assert correlational_scores(real, real)[0] == 0
    assert timegan_scores(real, fake, ["correlational"], repeats=2) == pytest.approx(
        {"correlational": expected, "correlational_std": 0.0})
    # invariant to each feature's scale and offset, and larger when the correlation is lost
    assert correlational_scores(real * 7 + 3, fake)[0] == pytest.approx(expected)
    assert correlational_scores(real, real * np.array([1.0, -1.0, 1.0]))[0] > 0.1
