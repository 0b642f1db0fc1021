"""The two scores of TimeGAN (Yoon, Jarrett & van der Schaar, NeurIPS 2019), reused by TimeVAE,
and the correlational score of Diffusion-TS (Yuan & Qiao, ICLR 2024).

Both take real and synthetic windows (N, T, D) scaled with the real set's per-feature min and max
(:func:`scale_like`), train a small one-layer GRU, and are repeated with fresh networks and splits:

- discriminative score: a GRU with H = max(1, D // 2) units whose last state feeds a logistic
  output learns to tell real (label 1) from synthetic (label 0) windows on 80 % of each set (Adam,
  the larger set subsampled to the size of the smaller in every repeat, at least ``MIN_WINDOWS`` each;
  ``steps`` = 2,000 steps of 128 real + 128 synthetic windows, loss = the two mean cross-entropies
  added); score = |accuracy on the other 20 % of both sets - 0.5|. 0 means indistinguishable.
- predictive score (train on synthetic, test on real): a GRU of the same size reads features
  1..D-1 at steps 1..T-1 and predicts feature D at steps 2..T through a sigmoid, trained with the
  L1 loss for ``steps`` = 5,000 steps of 128 synthetic windows; score = mean absolute error on all
  real windows. Trained on the real windows themselves it gives the real-data reference.

- correlational score: with every feature standardised over all windows and steps of its own set
  (sd with ddof = 1), the lag-0 cross-correlations c_ij = mean over windows and steps of
  x_ti x_tj for i >= j; score = sum_{i >= j} |c_ij(synthetic) - c_ij(real)| / 10 (Diffusion-TS's
  ``CrossCorrelLoss`` with one lag). Each repeat subsamples as many windows of each set as the
  smaller has; no network is trained, so it costs next to nothing.

:func:`timegan_scores` repeats them (default 10 times) and returns mean and standard deviation
(ddof = 1) over the repeats.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn.functional import binary_cross_entropy_with_logits

from ..data.windows import check_sequences

METRICS = ("discriminative", "predictive", "correlational")
DISCRIMINATIVE_STEPS = 2000
PREDICTIVE_STEPS = 5000
BATCH_SIZE = 128
#: the fewest windows of each set the discriminative score takes (its test split holds a fifth)
MIN_WINDOWS = 10


def scale_like(real, synthetic) -> tuple[np.ndarray, np.ndarray]:
    """Both sets min-max scaled per feature with the real set's min and max: (x - min) / (max - min + 1e-7)."""
    real = check_sequences(real, "real windows")
    synthetic = check_sequences(synthetic, "synthetic windows")
    if real.shape[1:] != synthetic.shape[1:]:
        raise ValueError(f"real windows have shape {real.shape[1:]}, synthetic ones {synthetic.shape[1:]}")
    low, high = real.min((0, 1)), real.max((0, 1))
    return (real - low) / (high - low + 1e-7), (synthetic - low) / (high - low + 1e-7)


class GRUScorers(nn.Module):
    """R independent one-layer GRUs of H units with linear outputs, run as one block-diagonal GRU.

    Input (B, T, R * F) holds repeat r's features in columns r F .. (r + 1) F - 1; output is
    (B, T, R) on every step or (B, R) from the last state. The weights between blocks start at 0
    and their gradients are masked to 0, so Adam never moves them: training the block GRU on the
    sum of the R losses is exactly R separate trainings, at about the cost of one.
    """

    def __init__(self, inputs: int, hidden: int, repeats: int, every_step: bool):
        super().__init__()
        self.repeats, self.hidden, self.every_step = repeats, hidden, every_step
        self.rnn = nn.GRU(repeats * inputs, repeats * hidden, batch_first=True)
        unit = torch.arange(repeats * hidden).repeat(3) // hidden  # repeat of each gate row
        bound = hidden ** -0.5  # PyTorch's initialisation for a GRU of H units
        for name, cols in (("weight_ih_l0", inputs), ("weight_hh_l0", hidden)):
            weight = getattr(self.rnn, name)
            mask = (unit[:, None] == torch.arange(weight.shape[1])[None, :] // cols).to(weight.dtype)
            with torch.no_grad():
                weight.uniform_(-bound, bound).mul_(mask)
            weight.register_hook(lambda grad, mask=mask: grad * mask)
        for name in ("bias_ih_l0", "bias_hh_l0"):
            nn.init.uniform_(getattr(self.rnn, name), -bound, bound)
        self.out_weight = nn.Parameter(torch.empty(repeats, hidden).uniform_(-bound, bound))
        self.out_bias = nn.Parameter(torch.empty(repeats).uniform_(-bound, bound))

    def forward(self, x):
        states, last = self.rnn(x)
        h = states if self.every_step else last[-1]
        h = h.reshape(h.shape[:-1] + (self.repeats, self.hidden))
        return (h * self.out_weight).sum(-1) + self.out_bias


def _hidden(features: int) -> int:
    return max(1, features // 2)


def _side_by_side(parts) -> torch.Tensor:
    """R tensors (B, T, F) -> (B, T, R F), repeat r in the r-th block of columns."""
    return torch.cat(list(parts), dim=-1)


def _batches(rng, sets, size: int) -> torch.Tensor:
    return _side_by_side(data[rng.permutation(len(data))[:size]] for data in sets)


def balanced_size(real: int, synthetic: int) -> int:
    """Windows of each set the discriminative score uses: as many real as synthetic (the
    smaller count), so that its accuracy is not decided by the sizes; at least
    :data:`MIN_WINDOWS`."""
    if min(real, synthetic) < MIN_WINDOWS:
        raise ValueError(f"the discriminative score needs at least {MIN_WINDOWS} real and {MIN_WINDOWS} "
                         f"synthetic windows, got {real} and {synthetic}")
    return min(real, synthetic)


def discriminative_scores(real, synthetic, *, repeats: int = 1, steps: int = DISCRIMINATIVE_STEPS,
                          batch_size: int = BATCH_SIZE, seed: int = 0, device: str = "cpu",
                          scaled: bool = False) -> np.ndarray:
    """|test accuracy - 0.5| of a post-hoc GRU classifier of real vs synthetic windows: (repeats,),
    each with its own 80/20 splits and network."""
    if not scaled:
        real, synthetic = scale_like(real, synthetic)
    size = balanced_size(len(real), len(synthetic))
    rng = np.random.RandomState(seed)
    torch.manual_seed(seed)
    splits = {"train": ([], []), "test": ([], [])}
    cut = min(max(int(round(0.8 * size)), 1), size - 1)
    for k, data in enumerate((real, synthetic)):
        tensor = torch.as_tensor(data, dtype=torch.float32, device=device)
        for _ in range(repeats):  # the larger set: a fresh subsample of `size` windows per repeat
            order = torch.as_tensor(rng.permutation(len(data))[:size], device=device)
            splits["train"][k].append(tensor[order[:cut]])
            splits["test"][k].append(tensor[order[cut:]])
    (real_train, fake_train), (real_test, fake_test) = splits["train"], splits["test"]
    net = GRUScorers(real.shape[-1], _hidden(real.shape[-1]), repeats, every_step=False).to(device)
    optim = torch.optim.Adam(net.parameters())
    for _ in range(steps):
        logit_real = net(_batches(rng, real_train, batch_size))
        logit_fake = net(_batches(rng, fake_train, batch_size))
        loss = repeats * (binary_cross_entropy_with_logits(logit_real, torch.ones_like(logit_real))
                          + binary_cross_entropy_with_logits(logit_fake, torch.zeros_like(logit_fake)))
        optim.zero_grad()
        loss.backward()
        optim.step()
    with torch.no_grad():
        correct = (net(_side_by_side(real_test)) > 0).sum(0) + (net(_side_by_side(fake_test)) <= 0).sum(0)
    accuracy = correct.double().cpu().numpy() / (len(real_test[0]) + len(fake_test[0]))
    return np.abs(accuracy - 0.5)


def predictive_scores(real, synthetic, *, repeats: int = 1, steps: int = PREDICTIVE_STEPS,
                      batch_size: int = BATCH_SIZE, seed: int = 0, device: str = "cpu",
                      scaled: bool = False) -> np.ndarray:
    """Mean absolute error on the real windows of a GRU that predicts the last feature one step
    ahead from the others, trained on the synthetic windows: (repeats,)."""
    if not scaled:
        real, synthetic = scale_like(real, synthetic)
    features = real.shape[-1]
    if features < 2 or real.shape[1] < 2:
        raise ValueError(f"the predictive score needs at least 2 features and 2 steps, got windows of shape {real.shape[1:]}")
    rng = np.random.RandomState(seed)
    torch.manual_seed(seed)
    train = torch.as_tensor(synthetic, dtype=torch.float32, device=device)
    test = torch.as_tensor(real, dtype=torch.float32, device=device)
    net = GRUScorers(features - 1, _hidden(features), repeats, every_step=True).to(device)
    optim = torch.optim.Adam(net.parameters())
    for _ in range(steps):
        batch = [train[rng.permutation(len(train))[:batch_size]] for _ in range(repeats)]
        guess = torch.sigmoid(net(_side_by_side(b[:, :-1, :-1] for b in batch)))
        target = _side_by_side(b[:, 1:, -1:] for b in batch)
        loss = repeats * (guess - target).abs().mean()
        optim.zero_grad()
        loss.backward()
        optim.step()
    with torch.no_grad():
        guess = torch.sigmoid(net(_side_by_side([test[:, :-1, :-1]] * repeats)))
    return (guess - test[:, 1:, -1:]).abs().mean((0, 1)).double().cpu().numpy()


def cross_correlations(windows: np.ndarray) -> np.ndarray:
    """Lag-0 cross-correlations of standardised features, (D (D + 1) / 2,) in ``np.tril_indices``
    order: c_ij = mean_{n,t} z_nti z_ntj with z = (x - mean) / sd per feature over (N, T), ddof 1
    (a constant feature has z = 0)."""
    sd = windows.std((0, 1), ddof=1)
    z = (windows - windows.mean((0, 1))) / np.where(sd > 0, sd, 1.0)
    i, j = np.tril_indices(windows.shape[-1])
    return (z[..., i] * z[..., j]).mean((0, 1))


def correlational_scores(real, synthetic, *, repeats: int = 1, seed: int = 0, **_) -> np.ndarray:
    """sum_{i >= j} |c_ij(synthetic) - c_ij(real)| / 10 (:func:`cross_correlations`), each repeat on
    a random subsample of as many windows of each set as the smaller holds: (repeats,)."""
    real, synthetic = check_sequences(real, "real windows"), check_sequences(synthetic, "synthetic windows")
    size = min(len(real), len(synthetic))
    rng = np.random.RandomState(seed)
    scores = []
    for _ in range(repeats):
        pick = [data[np.sort(rng.permutation(len(data))[:size])] for data in (real, synthetic)]
        scores.append(np.abs(cross_correlations(pick[1]) - cross_correlations(pick[0])).sum() / 10)
    return np.asarray(scores)


def timegan_scores(real, synthetic, metrics=METRICS, *, repeats: int = 10, seed: int = 0,
                   discriminative_steps: int = DISCRIMINATIVE_STEPS, predictive_steps: int = PREDICTIVE_STEPS,
                   batch_size: int = BATCH_SIZE, device: str = "cpu") -> dict:
    """``{"discriminative": m, "discriminative_std": s, "predictive": m, "predictive_std": s,
    "correlational": m, "correlational_std": s}`` (the metrics asked for) over ``repeats``
    independent runs (the networks trained side by side, :class:`GRUScorers`)."""
    metrics = [metrics] if isinstance(metrics, str) else list(metrics)
    unknown = [m for m in metrics if m not in METRICS]
    if unknown or not metrics:
        raise ValueError(f"unknown metric {', '.join(unknown) or '(none)'}; choose from: {', '.join(METRICS)}")
    if int(repeats) != repeats or repeats < 1:
        raise ValueError(f"repeats must be a positive integer, got {repeats}")
    if min(discriminative_steps, predictive_steps) < 1:
        raise ValueError("the numbers of training steps must be positive integers")
    real, synthetic = scale_like(real, synthetic)
    scorers = {"discriminative": (discriminative_scores, discriminative_steps),
               "predictive": (predictive_scores, predictive_steps), "correlational": (correlational_scores, 0)}
    result = {}
    for metric in metrics:
        scorer, steps = scorers[metric]
        values = scorer(real, synthetic, repeats=int(repeats), steps=steps, batch_size=batch_size, seed=seed,
                        device=device, scaled=True)
        result[metric] = float(values.mean())
        result[f"{metric}_std"] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
    return result
