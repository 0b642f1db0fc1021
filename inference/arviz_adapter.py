"""The one place that talks to ArviZ: numpy dicts in, ArviZ data, summaries and LOO out.

It needs numpy and arviz only (no torch, no dlvm), and works with arviz 0.23 (Python 3.11:
``InferenceData``) and arviz 1.x (Python >= 3.12: a ``DataTree``; ``from_dict`` takes
``{group: {var: array}}``, there is no ``from_pyro``, and ``loo`` accepts only (chain, draw) sample
dims, which is why guide draws go in as one chain). Run it as a script for a self-check:
``python arviz_adapter.py`` prints "arviz adapter ok (arviz X)"; ``python arviz_adapter.py
GROUPS.npz`` checks groups saved by :func:`save_groups` (summary, LOO per observed site, compare,
trace plot).

Arrays of the sampled groups (posterior, posterior_predictive, log_likelihood, sample_stats) have
shape (chain, draw, ...); observed_data arrays have no sample dims.
"""
from __future__ import annotations

import json
import math
import sys
import warnings
from pathlib import Path

import numpy as np

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # arviz 0.23 announces its refactor with a FutureWarning
    import arviz as az

ARVIZ_1 = int(az.__version__.split(".")[0]) >= 1
SAMPLED_GROUPS = ("posterior", "posterior_predictive", "log_likelihood", "sample_stats")
GROUPS = SAMPLED_GROUPS + ("observed_data",)
#: above this Pareto k the importance ratios have no finite mean: "very bad" at any sample size
K_VERY_BAD = 1.0


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


def khat_threshold(num_draws: int) -> float:
    """The largest Pareto k at which PSIS with ``num_draws`` draws is reliable: min(1 - 1/log10(S),
    0.7) (Vehtari et al. 2024, "Pareto smoothed importance sampling"; ArviZ's ``good_k``)."""
    if num_draws < 2:
        raise ValueError(f"PSIS needs at least 2 draws, got {num_draws}")
    return min(1.0 - 1.0 / math.log10(num_draws), 0.7)


def pareto_k_counts(k, num_draws: int) -> dict:
    """How many of the values ``k`` (from ``num_draws`` draws each) are good (at most
    :func:`khat_threshold`), bad (up to 1) or very bad (above 1)."""
    k = np.asarray(k, dtype=float).ravel()
    good = khat_threshold(num_draws)
    return {"good": int((k <= good).sum()), "bad": int(((k > good) & (k <= K_VERY_BAD)).sum()),
            "very_bad": int((k > K_VERY_BAD).sum())}


def _log_likelihood(data, var_name: str | None):
    """The log_likelihood group, checked to hold ``var_name`` (or a single variable when None)."""
    group = data["log_likelihood"] if ARVIZ_1 else data.log_likelihood
    names = list(group.data_vars)
    if var_name is None and len(names) > 1:
        raise ValueError(f"the model has several observed sites ({', '.join(names)}): pass var_name=one of them")
    if var_name is not None and var_name not in names:
        raise ValueError(f"no observed site {var_name!r} in the log_likelihood group; it has {', '.join(names)}")
    return group


def _num_draws(data, var_name: str | None) -> int:
    """Chains x draws of the log_likelihood group."""
    group = _log_likelihood(data, var_name)
    return int(group.sizes["chain"] * group.sizes["draw"])


def loo(data, var_name: str | None = None) -> dict:
    """PSIS-LOO from the log_likelihood group (``var_name`` picks one observed site where there are
    several): elpd, its se, p_loo, the Pareto k per observation, the sample-size-dependent k
    threshold and the counts per bin (:func:`pareto_k_counts`)."""
    draws = _num_draws(data, var_name)
    with warnings.catch_warnings():
        # arviz warns when some k is large; the counts below report it
        warnings.simplefilter("ignore")
        result = az.loo(data, pointwise=True, var_name=var_name)
    if ARVIZ_1:
        elpd, p_loo = float(result.elpd), float(result.p)
    else:
        elpd, p_loo = float(result.elpd_loo), float(result.p_loo)
    k = np.asarray(result.pareto_k).ravel()
    return {"elpd": elpd, "se": float(result.se), "p_loo": p_loo, "pareto_k": k,
            "k_threshold": khat_threshold(draws), "k_counts": pareto_k_counts(k, draws)}


def compare(named: dict, var_name: str | None = None):
    """PSIS-LOO comparison of ``{name: data}``, best first: rank, elpd, se, p (effective number of
    parameters), elpd_diff (elpd minus the best one's, <= 0), dse and the stacking weight."""
    for data in named.values():
        _log_likelihood(data, var_name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = az.compare(named, var_name=var_name)
    table = table.rename(columns={"elpd_loo": "elpd", "p_loo": "p"})
    table["elpd_diff"] = table["elpd"] - table["elpd"].max()
    return table[["rank", "elpd", "se", "p", "elpd_diff", "dse", "weight"]].astype(float)


def plot_trace(data, path) -> Path:
    """ArviZ's trace plot of the posterior, saved as an image at ``path`` (needs matplotlib)."""
    # imported here: matplotlib is heavy to load and only the plots need it (and its Agg backend)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # after choosing the backend

    path = Path(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if ARVIZ_1:
            az.plot_trace(data, backend="matplotlib").savefig(path)
        else:
            np.ravel(az.plot_trace(data))[0].figure.savefig(path)
    plt.close("all")
    return path


def save_groups(path, groups: dict, coords: dict | None = None, dims: dict | None = None) -> Path:
    """Write ``{group: {var: array}}`` with its coords and dims to one .npz file (see :func:`load_groups`)."""
    arrays = {f"{group}/{name}": np.asarray(value)
              for group, values in groups.items() for name, value in values.items()}
    meta = {"coords": {k: np.asarray(v).tolist() for k, v in (coords or {}).items()}, "dims": dims or {}}
    np.savez(path, __meta__=np.array(json.dumps(meta)), **arrays)
    return Path(path)


def load_groups(path) -> tuple[dict, dict, dict]:
    """(groups, coords, dims) written by :func:`save_groups`."""
    groups: dict = {}
    with np.load(path, allow_pickle=False) as stored:
        meta = json.loads(str(stored["__meta__"]))
        for key in stored.files:
            if key != "__meta__":
                group, name = key.split("/", 1)
                groups.setdefault(group, {})[name] = stored[key]
    return groups, meta["coords"], meta["dims"]


def check_saved(path) -> str:
    """Load saved groups and run summary, LOO of every observed site, compare and the trace plot."""
    groups, coords, dims = load_groups(path)
    data = from_dict(groups, coords=coords, dims=dims)
    table = summary(data, mcmc="sample_stats" in groups)
    if not np.isfinite(table["mean"]).all():
        raise AssertionError(f"non-finite posterior means\n{table}")
    for name in groups["log_likelihood"]:
        if not np.isfinite(loo(data, var_name=name)["elpd"]):
            raise AssertionError(f"non-finite elpd for {name}")
    name = next(iter(groups["log_likelihood"]))
    if len(compare({"a": data, "b": data}, var_name=name)) != 2:
        raise AssertionError("compare did not rank both")
    plot_trace(data, Path(path).with_suffix(".png"))
    return f"arviz adapter ok (arviz {az.__version__}): {Path(path).name}"


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
    other = from_dict({"posterior": {"mu": mu}, "log_likelihood": {"x": log_lik - 1.0}})
    table = compare({"near": data, "far": other})
    if list(table.index) != ["near", "far"] or abs(table.loc["far", "elpd_diff"] + rows) > 1e-6:
        raise AssertionError(f"unexpected comparison\n{table}")
    if abs(result["k_threshold"] - min(1 - 1 / np.log10(draws), 0.7)) > 1e-12:
        raise AssertionError(f"unexpected Pareto k threshold {result['k_threshold']}")
    return f"arviz adapter ok (arviz {az.__version__})"


if __name__ == "__main__":
    print(self_check() if len(sys.argv) < 2 else "\n".join(check_saved(p) for p in sys.argv[1:]))
