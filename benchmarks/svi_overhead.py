"""Per-step time of ``dlvm.inference.fit`` against plain ``pyro.infer.SVI`` on a user's own model.

The same model and AutoNormal guide, the same Adam and learning rate, written in plain Pyro:
eight schools (8 rows: Python overhead dominates) and a Bayesian logistic regression on 10,000
rows (tensor work dominates). The two loops alternate in rounds so that a change in machine load
hits both; each round times a whole run of ``--steps`` steps (the guide is built in the first
step of both), and the table gives the median seconds per step over the rounds, measured in one process,
on one thread, and the ratio dlvm / SVI (goal: at most 1.05).

    python benchmarks/svi_overhead.py [--rounds 5] [--steps 300] [--threads 1]
"""
from __future__ import annotations

import argparse
import statistics
import time

import pyro
import pyro.distributions as dist
import torch
from pyro.infer import SVI, Trace_ELBO
from pyro.infer.autoguide import AutoNormal

from dlvm.inference import fit

SIGMA = torch.tensor([15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0])
Y = torch.tensor([28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0])


def eight_schools(sigma, y=None):
    mu = pyro.sample("mu", dist.Normal(0.0, 5.0))
    tau = pyro.sample("tau", dist.HalfCauchy(5.0))
    with pyro.plate("schools", len(sigma)):
        eta = pyro.sample("eta", dist.Normal(0.0, 1.0))
        pyro.sample("obs", dist.Normal(mu + tau * eta, sigma), obs=y)


def logistic(x, y=None):
    w = pyro.sample("w", dist.Normal(0.0, 1.0).expand([x.shape[1]]).to_event(1))
    with pyro.plate("data", x.shape[0]):
        pyro.sample("y", dist.Bernoulli(logits=x @ w), obs=y)


def logistic_data(n=10_000, d=10):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, d, generator=g)
    return x, torch.bernoulli(torch.sigmoid(x @ torch.randn(d, generator=g)), generator=g)


def svi_seconds(model, args, steps, lr):
    """Seconds per step of ``steps`` SVI steps (the guide is built in the first, as in fit)."""
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    began = time.perf_counter()
    svi = SVI(model, AutoNormal(model), pyro.optim.Adam({"lr": lr}), Trace_ELBO())
    for _ in range(steps):
        svi.step(*args)
    return (time.perf_counter() - began) / steps


def dlvm_seconds(model, args, steps, lr):
    """Seconds per step of ``fit`` for ``steps`` steps (a step is an epoch: all hooks run)."""
    pyro.clear_param_store()
    began = time.perf_counter()
    fit(model, AutoNormal(model), args=args, steps=steps, lr=lr, elbo="trace", progress=False)
    return (time.perf_counter() - began) / steps


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print("| model | SVI ms/step | dlvm fit ms/step | ratio |")
    print("| --- | --- | --- | --- |")
    for name, model, data in (("eight schools, AutoNormal", eight_schools, (SIGMA, Y)),
                              ("logistic regression 10^4 x 10, AutoNormal", logistic, logistic_data())):
        svi, ours = [], []
        for _ in range(args.rounds):
            svi.append(svi_seconds(model, data, args.steps, 0.01))
            ours.append(dlvm_seconds(model, data, args.steps, 0.01))
        s, d = statistics.median(svi), statistics.median(ours)
        print(f"| {name} | {1e3 * s:.3f} | {1e3 * d:.3f} | {d / s:.3f}x |", flush=True)


if __name__ == "__main__":
    main()
