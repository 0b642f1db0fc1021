"""dlvm Factor Analysis against scikit-learn's FactorAnalysis, on the same data in one process.

For each size (N rows, D features, K factors) the data are K-factor FA draws with heteroscedastic
noise. Methods:
  sklearn   sklearn.decomposition.FactorAnalysis(K) with its defaults (randomized SVD, tol 1e-2)
  exact     dlvm: Marginalized(FA) + ExactGuide, full-batch L-BFGS on the exact marginal, float64
  svi       dlvm: the amortized guide with `dlvm fit fa --guide amortized`'s defaults (linear encoder
            started at the exact posterior, diagonal q(z|x), full-batch Adam at the model's default
            step, 100 epochs)
Reported: the exact log-likelihood per row of the fitted parameters on the training data, its gap
to scikit-learn's (positive = dlvm higher) and the wall time relative to scikit-learn, as medians
over repeats. Everything runs on one thread (torch and BLAS). The first torch optimizer built in a
process imports torch._dynamo (about 1-2 s, once); a warm-up fit pays it before timing starts.

    python benchmarks/fa_sklearn.py [--repeats 5] [--svi-repeats 3] [--out benchmarks/RESULTS-fa.md]
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.decomposition import FactorAnalysis as SkFactorAnalysis
from threadpoolctl import threadpool_limits

from dlvm.guides import pair
from dlvm.inference import fit
from dlvm.models import MODELS
from dlvm.models.factor import FactorAnalysis

SIZES = [(1000, 20, 3), (2000, 50, 5), (10000, 100, 10)]
SVI = {"epochs": 100, "batch_size": None, "lr": MODELS["fa"].default_lr["amortized"]}


def make_data(n, d, k, seed=0):
    rng = np.random.default_rng(seed)
    loadings = rng.standard_normal((d, k))
    noise = rng.uniform(0.5, 2.0, size=d)
    return rng.standard_normal((n, k)) @ loadings.T + rng.standard_normal((n, d)) * np.sqrt(noise)


def sklearn_fit(x, k):
    began = time.perf_counter()
    fa = SkFactorAnalysis(k, random_state=0).fit(x)
    return time.perf_counter() - began, float(fa.score(x))


def log_likelihood(model, x):
    with torch.no_grad():
        return float(model.log_marginal(torch.as_tensor(x, dtype=torch.float64)).mean())


def exact_fit(x, k):
    model = FactorAnalysis(x.shape[1], k).double()
    trained, guide = pair(model, "exact", (x.shape[1],))
    began = time.perf_counter()
    fit(trained, guide, x, optimizer="lbfgs", epochs=100, progress=False)
    return time.perf_counter() - began, log_likelihood(model, x)


def svi_fit(x, k, seed=0):
    model = FactorAnalysis(x.shape[1], k).double()
    trained, guide = pair(model, "amortized", (x.shape[1],))
    guide.double()
    began = time.perf_counter()
    fit(trained, guide, x, optimizer="adam", seed=seed, progress=False, **SVI)
    return time.perf_counter() - began, log_likelihood(model, x)


def median_run(function, repeats, *args):
    runs = [function(*args) for _ in range(repeats)]
    return statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--svi-repeats", type=int, default=3)
    parser.add_argument("--no-svi", action="store_true", help="skip the (slow) amortized SVI rows")
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("RESULTS-fa.md"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    lines = [
        "| N | D | K | method | log-lik / row | gap vs sklearn (nats/row) | time (s) | time / sklearn |",
        "|---:|---:|---:|---|---:|---:|---:|---:|",
    ]
    with threadpool_limits(1):
        exact_fit(make_data(200, 10, 2), 2)  # warm-up: one-off imports
        for n, d, k in SIZES:
            x = make_data(n, d, k)
            ref_time, ref_ll = median_run(sklearn_fit, args.repeats, x, k)
            rows = [("sklearn", ref_time, ref_ll), ("exact (L-BFGS)", *median_run(exact_fit, args.repeats, x, k))]
            if not args.no_svi:
                rows.append(("svi (amortized)", *median_run(svi_fit, args.svi_repeats, x, k)))
            for name, seconds, ll in rows:
                lines.append(
                    f"| {n} | {d} | {k} | {name} | {ll:.6f} | {ll - ref_ll:+.2e} | {seconds:.4f} | "
                    f"{seconds / ref_time:.2f} |"
                )
                print(lines[-1], flush=True)
    epochs, batch, lr = SVI["epochs"], SVI["batch_size"], SVI["lr"]
    text = "\n".join([
        "# dlvm Factor Analysis vs scikit-learn",
        "",
        "`python benchmarks/fa_sklearn.py`: medians of "
        f"{args.repeats} repeats (SVI: {args.svi_repeats}), one thread, same data in one process. "
        "Log-likelihood is the exact mean log p(x) per training row of the fitted parameters. "
        f"SVI: the CLI's amortized defaults (linear encoder warm-started at the exact posterior, diagonal "
        f"q(z|x)), Adam lr {lr}, batch {batch or 'full'}, {epochs} epochs.",
        "",
        *lines,
        "",
    ])
    print()
    print(text)
    args.out.write_text(text)


if __name__ == "__main__":
    main()
