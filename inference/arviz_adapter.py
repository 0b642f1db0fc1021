"""The one place that talks to ArviZ: numpy dicts in, ArviZ data, summaries and LOO out.

It needs numpy and arviz only (no torch, no dlvm), and works with arviz 0.23 (Python 3.11:
``InferenceData``) and arviz 1.x (Python >= 3.12: a ``DataTree``; ``from_dict`` takes
``{group: {var: array}}``, there is no ``from_pyro``, and ``loo`` accepts only (chain, draw) sample
dims, which is why guide draws go in as one chain). Run it as a script for a self-check:
``python arviz_adapter.py`` prints "arviz adapter ok (arviz X)".

Arrays of the sampled groups (posterior, posterior_predictive, log_likelihood, sample_stats) have
shape (chain, draw, ...); observed_data arrays have no sample dims.
"""
from __future__ import annotations

import warnings

import numpy as np

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # arviz 0.23 announces its refactor with a FutureWarning
    import arviz as az

ARVIZ_1 = int(az.__version__.split(".")[0]) >= 1
SAMPLED_GROUPS = ("posterior", "posterior_predictive", "log_likelihood", "sample_stats")
GROUPS = SAMPLED_GROUPS + ("observed_data",)
#: Pareto k thresholds (Vehtari et al. 2017; Yao et al. 2018): good, ok, bad, very bad
K_BINS = (0.5, 0.7, 1.0)


def from_dict(groups: dict, coords: dict | None = None, dims: dict | None = None):
    """ArviZ data from ``{group: {var: array}}``; empty or missing groups are left out."""
    unknown = set(groups) - set(GROUPS)
    if unknown:
        raise ValueError(f"unknown ArviZ group(s) {', '.join(sorted(unknown))}; use {', '.join(GROUPS)}")
    groups = {g: {k: np.asarray(v) for k, v in vs.items()} for g, vs in groups.items() if vs}
    for group in SAMPLED_GROUPS:
        for name, value in groups.get(group, {}).items():
            if value.ndim < 2:
                raise ValueError(f"{group}/{name} needs (chain, draw, ...) dims, got shape {value.shape}")
    coords = {k: np.asarray(v) for k, v in (coords or {}).items()}
    if ARVIZ_1:
        return az.from_dict(groups, coords=coords, dims=dims or {})
    return az.from_dict(**groups, coords=coords, dims=dims or {})


def group_names(data) -> list[str]:
    """The groups present in ``data`` (either arviz version)."""
    if ARVIZ_1:
        return [name for name in data.children]
    return list(data.groups())


def summary(data, mcmc: bool, hdi_prob: float = 0.94):
    """Posterior summary table: mean, sd, hdi_low, hdi_high, and for MCMC also ess_bulk,
    ess_tail and r_hat (they mean nothing for independent guide draws, so they are left out)."""
    kind = "all" if mcmc else "stats"
    if ARVIZ_1:
        table = az.summary(data, kind=kind, ci_kind="hdi", ci_prob=hdi_prob, round_to="none")
    else:
        table = az.summary(data, kind=kind, hdi_prob=hdi_prob, round_to="none")
    low, high = [c for c in table.columns if c.startswith("hdi")][:2]
    table = table.rename(columns={low: "hdi_low", high: "hdi_high"})
    keep = ["mean", "sd", "hdi_low", "hdi_high"] + (["ess_bulk", "ess_tail", "r_hat"] if mcmc else [])
    return table[keep].astype(float)


def pareto_k_counts(k) -> dict:
    """How many of the values ``k`` fall in each Pareto k bin (<= 0.5, <= 0.7, <= 1, > 1)."""
    k = np.asarray(k, dtype=float).ravel()
    good, ok, bad = K_BINS
    return {
        "good": int((k <= good).sum()), "ok": int(((k > good) & (k <= ok)).sum()),
        "bad": int(((k > ok) & (k <= bad)).sum()), "very_bad": int((k > bad).sum()),
    }


def loo(data) -> dict:
    """PSIS-LOO from the log_likelihood group: elpd, its se, p_loo, the Pareto k per observation
    and their counts per bin (:func:`pareto_k_counts`)."""
    with warnings.catch_warnings():
        # arviz warns when some k is large; the counts below report it
        warnings.simplefilter("ignore")
        result = az.loo(data, pointwise=True)
    if ARVIZ_1:
        elpd, p_loo = float(result.elpd), float(result.p)
    else:
        elpd, p_loo = float(result.elpd_loo), float(result.p_loo)
    k = np.asarray(result.pareto_k).ravel()
    return {"elpd": elpd, "se": float(result.se), "p_loo": p_loo, "pareto_k": k,
            "k_counts": pareto_k_counts(k)}


def self_check() -> str:
    """Build a small data set with every group, summarise it and run LOO; raise on any mismatch."""
    rng = np.random.default_rng(0)
    draws, rows = 400, 12
    mu = rng.normal(0.5, 0.1, size=(1, draws))
    observed = rng.normal(0.5, 1.0, size=rows)
    log_lik = -0.5 * np.log(2 * np.pi) - 0.5 * (observed - mu[..., None]) ** 2
    data = from_dict(
        {"posterior": {"mu": mu, "w": rng.normal(size=(1, draws, 2))},
         "posterior_predictive": {"x": rng.normal(mu[..., None], 1.0, size=(1, draws, rows))},
         "log_likelihood": {"x": log_lik}, "observed_data": {"x": observed}},
        coords={"row": np.arange(rows), "factor": ["f0", "f1"]}, dims={"x": ["row"], "w": ["factor"]},
    )
    expected = {"posterior", "posterior_predictive", "log_likelihood", "observed_data"}
    if set(group_names(data)) != expected:
        raise AssertionError(f"groups {group_names(data)} != {sorted(expected)}")
    table = summary(data, mcmc=False)
    if list(table.columns) != ["mean", "sd", "hdi_low", "hdi_high"] or len(table) != 3:
        raise AssertionError(f"unexpected summary\n{table}")
    if abs(table.loc["mu", "mean"] - mu.mean()) > 1e-6:
        raise AssertionError("summary mean differs from the draws' mean")
    result = loo(data)
    if not np.isfinite(result["elpd"]) or result["pareto_k"].shape != (rows,):
        raise AssertionError(f"unexpected loo result {result}")
    if sum(result["k_counts"].values()) != rows:
        raise AssertionError("Pareto k counts do not add up to the rows")
    return f"arviz adapter ok (arviz {az.__version__})"


if __name__ == "__main__":
    print(self_check())
