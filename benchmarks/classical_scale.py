"""Closed-form EM at scale against scikit-learn and hmmlearn, timed in one process.

Problems (full size; ``--scale`` shrinks the rows / steps, e.g. 0.2 on a small machine):
  GMM  K = 10 full covariances on 10^6 x 20 rows (well-separated components)
  HMM  K = 4 full covariances on one 10^5-step 5-D series
  FA   K = 10 factors on 10^6 x 100 rows (heteroscedastic noise)
Each library fits with its defaults (dlvm: ``fit_em`` as ``dlvm fit`` runs it; scikit-learn /
hmmlearn: their estimator with its defaults, one initialisation). The target is the best
log-likelihood per row (per step) either reached; "to 1e-3" is the time at which a fit first got
within 1e-3 nats of it (dlvm from its per-iteration history; the reference by refitting with 1, 2,
4, ... iterations, only when its default fit got there); "to reference" is the time dlvm took to
get within 1e-3 of the reference's final value, against the reference's whole fit. Peak resident memory is measured per method in
a fresh process (``--peak``). One thread (torch and BLAS). Prints a markdown table.

    python benchmarks/classical_scale.py [--scale 1.0] [--only gmm,hmm,fa]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import warnings

import numpy as np
import torch
from hmmlearn.hmm import GaussianHMM as ReferenceHMM
from sklearn.decomposition import FactorAnalysis as ReferenceFA
from sklearn.mixture import GaussianMixture as ReferenceGMM
from threadpoolctl import threadpool_limits

from dlvm.inference.em import fit_em
from dlvm.models import FactorAnalysis, GaussianHMM, GaussianMixture

TOLERANCE = 1e-3
SIZES = {"gmm": 1_000_000, "hmm": 100_000, "fa": 1_000_000}


def gmm_data(n, d=20, k=10, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, d)) * 4
    tilts = rng.normal(size=(k, d, d)) / np.sqrt(d)
    labels = rng.integers(0, k, n)
    noise = rng.normal(size=(n, d))
    x = np.empty((n, d))
    for j in range(k):
        rows = labels == j
        x[rows] = centres[j] + noise[rows] @ tilts[j].T
    return x


def hmm_data(t, d=5, k=4, seed=0):
    rng = np.random.default_rng(seed)
    transition = np.full((k, k), 0.02 / (k - 1)) + np.eye(k) * (0.98 - 0.02 / (k - 1))
    means = rng.normal(size=(k, d)) * 2
    tilts = rng.normal(size=(k, d, d)) / np.sqrt(d)
    states = np.empty(t, dtype=int)
    states[0] = 0
    draws = rng.random(t)
    cumulative = transition.cumsum(1)
    for step in range(1, t):
        states[step] = np.searchsorted(cumulative[states[step - 1]], draws[step])
    noise = rng.normal(size=(t, d))
    return means[states] + np.einsum("tij,tj->ti", tilts[states], noise)


def fa_data(n, d=100, k=10, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, k)) @ rng.standard_normal((d, k)).T
    x += rng.standard_normal((n, d)) * np.sqrt(rng.uniform(0.5, 2.0, size=d))
    return x


def dlvm_fit(kind, x):
    """(seconds, log-likelihood per row, [(seconds, value) per EM iteration])."""
    began = time.perf_counter()
    if kind == "gmm":
        model = GaussianMixture(x.shape[1], 10, "full").double()
        data = x
    elif kind == "hmm":
        model = GaussianHMM(x.shape[1], 4, "full").double()
        data = x[None]
    else:
        model = FactorAnalysis(x.shape[1], 10).double()
        data = x
    result = fit_em(model, data)
    seconds = time.perf_counter() - began
    with torch.no_grad():
        value = float(model.log_marginal(torch.as_tensor(data)).sum()) / len(x)
    # history: log-likelihood before each iteration's update, at the time that iteration ended
    trace = list(zip(result.history.seconds.tolist()[1:], result.history.elbo.tolist()[1:]))
    return seconds, value, trace + [(seconds, value)]


def reference_fit(kind, x, iterations=None):
    """(seconds, log-likelihood per row) of the reference with its defaults (or ``iterations``)."""
    options = {} if iterations is None else {"max_iter": iterations}
    began = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if kind == "gmm":
            ref = ReferenceGMM(10, random_state=0, **options).fit(x)
            seconds = time.perf_counter() - began
            return seconds, float(ref.score(x))
        if kind == "hmm":
            ref = ReferenceHMM(4, covariance_type="full", random_state=0,
                               **({} if iterations is None else {"n_iter": iterations, "tol": 0.0})).fit(x)
            seconds = time.perf_counter() - began
            return seconds, float(ref.score(x)) / len(x)
        ref = ReferenceFA(10, random_state=0, **options).fit(x)
        seconds = time.perf_counter() - began
        return seconds, float(ref.score(x))


def reference_time_to(kind, x, target, default_iterations=None):
    """Seconds of the first reference fit with 1, 2, 4, ... iterations within TOLERANCE of target."""
    steps = 1
    while steps <= 512:
        seconds, value = reference_fit(kind, x, steps)
        if value >= target - TOLERANCE:
            return seconds
        steps *= 2
    return float("nan")


def make(kind, scale):
    n = max(2000, int(SIZES[kind] * scale))
    return {"gmm": gmm_data, "hmm": hmm_data, "fa": fa_data}[kind](n)


def peak_memory(kind, method, scale) -> float:
    """Peak resident memory (MiB) of one fit in a fresh process, above what the process held before
    the fit (imports and data)."""
    done = subprocess.run([sys.executable, __file__, "--peak", f"{kind}:{method}", "--scale", str(scale)],
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])["peak_mib"]


def resident_mib(field: str) -> float:
    """VmRSS (current) or VmHWM (peak since the last reset) of this process, in MiB (Linux)."""
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run_peak(spec, scale):
    """Print the peak resident memory of one fit above the memory held before it (imports, data):
    the kernel's peak counter is reset after the data are made (/proc/self/clear_refs)."""
    kind, method = spec.split(":")
    x = make(kind, scale)
    with threadpool_limits(1):
        dlvm_fit("gmm", gmm_data(2000)) if method == "dlvm" else reference_fit(kind, x[:2000])  # imports
        before = resident_mib("VmRSS")
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        (dlvm_fit if method == "dlvm" else reference_fit)(kind, x)
    print(json.dumps({"peak_mib": resident_mib("VmHWM") - before}))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the full rows / steps")
    parser.add_argument("--only", default="gmm,hmm,fa")
    parser.add_argument("--peak", help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.peak:
        return run_peak(args.peak, args.scale)
    names = {"gmm": "GMM K=10 full, D=20", "hmm": "Gaussian HMM K=4 full, D=5", "fa": "FA K=10, D=100"}
    refs = {"gmm": "scikit-learn", "hmm": "hmmlearn", "fa": "scikit-learn"}
    print(f"One thread; sizes x {args.scale:g} of the full problems; target = the better final log-likelihood "
          f"per row (step); tolerance {TOLERANCE} nats. Peak MiB: resident memory of the fit above what the "
          "process held before it (imports, data), each in a fresh process.\n")
    print("| problem | rows | dlvm s | reference | reference s | dlvm - reference (nats) | dlvm s to reference "
          "| ratio to reference | dlvm s to 1e-3 | reference s to 1e-3 | ratio to 1e-3 | ratio total "
          "| peak MiB dlvm | peak MiB reference |")
    print("|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|", flush=True)
    with threadpool_limits(1):
        dlvm_fit("gmm", gmm_data(2000))  # warm-up: one-off imports and first calls
        for kind in args.only.split(","):
            x = make(kind, args.scale)
            ref_seconds, ref_value = reference_fit(kind, x)
            seconds, value, trace = dlvm_fit(kind, x)
            target = max(ref_value, value)
            to_target = next((s for s, v in trace if v >= target - TOLERANCE), float("nan"))
            to_reference = next((s for s, v in trace if v >= ref_value - TOLERANCE), float("nan"))
            ref_to = reference_time_to(kind, x, target) if ref_value >= target - TOLERANCE else float("nan")
            peaks = [peak_memory(kind, method, args.scale) for method in ("dlvm", "reference")]
            print(f"| {names[kind]} | {len(x):,} | {seconds:.2f} | {refs[kind]} | {ref_seconds:.2f} "
                  f"| {value - ref_value:+.1e} | {to_reference:.2f} | {to_reference / ref_seconds:.2f} "
                  f"| {to_target:.2f} | {ref_to:.2f} | {to_target / ref_to:.2f} "
                  f"| {seconds / ref_seconds:.2f} | {peaks[0]:.0f} | {peaks[1]:.0f} |", flush=True)


if __name__ == "__main__":
    main()
