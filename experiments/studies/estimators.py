"""Gradient estimators compared on every registered table model (§6.4.3) and the gap (§6.4.4).

For each model in :data:`MODEL_NAMES` that the registry holds (FA: continuous z with an exact
evidence; the GMM: discrete z; the VAE), every guide the model pairs with is built, and guides
that sample z without reparameterisation get the score-function variants (no baseline, decaying
average, neural baseline). :func:`compare` measures the gradient variance of each (guide,
estimator) pair on one minibatch and trains each guide family, recording ELBO, IWAE-K and the exact
log p(x) against steps and seconds.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from ...models import MODELS

from ..runs.compare import compare, write_tables

#: registry names the experiment runs, where they exist
MODEL_NAMES = ("fa", "gmm", "vae")


def synthetic_table(n: int, width: int, seed: int = 0) -> np.ndarray:
    """Rows in (0, 1): two clusters with a one-factor structure, squashed by a logistic.

    One table suits every model here (Gaussian, mixture and Bernoulli/continuous decoders alike).
    """
    rng = np.random.default_rng(seed)
    cluster = rng.integers(0, 2, size=n)
    centres = rng.normal(0.0, 1.5, size=(2, width))
    loading = rng.normal(0.0, 1.0, size=width)
    factor = rng.normal(size=(n, 1))
    x = centres[cluster] + factor * loading + 0.3 * rng.normal(size=(n, width))
    return 1.0 / (1.0 + np.exp(-x))


def run(out: Path, *, quick: bool, seed: int = 0, device: str = "cpu", progress: bool = False) -> dict:
    out = Path(out)
    names = [n for n in MODEL_NAMES if n in MODELS]
    results = []
    for name in names:
        width = MODELS[name].example_shape
        rows = 96 if quick else 500
        data = synthetic_table(rows, int(np.prod(width)), seed).reshape(rows, *width)
        # quick mode: full-batch steps on the 96 rows, enough of them for the curves to flatten
        results.append(compare(
            name, data, seed=seed, num_draws=20 if quick else 200, steps=300 if quick else 1000,
            eval_every=50, batch_size=None if quick else 64,
        ))
    merged = {k: pd.concat([r[k] for r in results], ignore_index=True) for k in ("gradients", "curves", "gap")}
    files = write_tables(merged, out)
    grads = merged["gradients"][merged["gradients"].group == "all"]
    summary = {
        "models": names,
        "gradient_variance": {f"{m}/{g}/{e}": float(v) for m, g, e, v in zip(grads.model, grads.guide, grads.elbo, grads.variance)},
        "gap": {f"{m}/{g}": (None if not math.isfinite(v) else float(v)) for m, g, v in
                zip(merged["gap"].model, merged["gap"].guide, merged["gap"].gap.astype(float))},
        "files": files,
        "caption": (
            "Score-function gradients are orders of magnitude noisier than reparameterised or "
            "enumerated ones, and Rao-Blackwellisation with a baseline recovers much of the gap. "
            "The exact log-likelihood sits above every bound, and the final gap exact - ELBO shows "
            "how far each guide family is from the true posterior (§6.4.4)."
        ),
    }
    json.dumps(summary)  # must serialise
    return summary
