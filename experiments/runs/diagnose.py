"""``diagnose``: ArviZ diagnostics of a run folder (from SVI's guide, or from NUTS on the globals).

Writes ``summary.csv`` (mean, sd, hdi; ess and r_hat for MCMC only), ``loo.json`` (elpd, se,
p_loo, Pareto k counts), ``psis_khat.csv`` (the guide's importance-weight k-hat per row; the share
of rows above the sample-size-dependent threshold, 0.7 at most, is where the amortized guide
fails; none for an exact guide, whose weights are all equal), ``figures/ppc.png`` (posterior
predictive check) and, for MCMC, ``figures/trace.png`` and ``figures/forest.png``.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from ...inference import arviz_adapter
from ...inference.diagnostics import psis_khat, run_nuts, to_arviz
from ...guides import GUIDES
from ...models.base import has_global_latents

from ..reporting.plots import plt, save_figure_at
from .folders import check_event_shape, load_run, run_data

KHAT_EXACT_NOTE = "no PSIS k-hat: the guide is the exact posterior, so every importance weight is equal"


def _read(data, config: dict):
    """(x, mask) from an array, or from a data-set name / file path / the run's own data (None)."""
    if data is None or isinstance(data, (str, Path)):
        return run_data(config, data)
    x = np.asarray(data, dtype=float)
    check_event_shape(x.shape[1:], config)
    return x, None


def arviz_plot(name: str, data, path: Path, **kwargs) -> Path | None:
    """An ArviZ plot (arviz 0.23 API) saved to ``path``; None where this arviz lacks it."""
    function = getattr(arviz_adapter.az, name, None)
    if function is None:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        axes = function(data, **kwargs)
    fig = np.ravel(axes)[0].figure if not hasattr(axes, "figure") else axes.figure
    return save_figure_at(fig, path)


def _ppc_figure(idata, path: Path) -> None:
    """Histograms of the replicated and the observed ``x`` over all coordinates."""
    replicated = idata.posterior_predictive["x"].values.reshape(-1)
    observed = idata.observed_data["x"].values.reshape(-1)
    observed = observed[np.isfinite(observed)]
    fig, ax = plt.subplots(figsize=(6, 4))
    bins = np.histogram_bin_edges(np.concatenate([observed, replicated]), 40)
    ax.hist(replicated, bins=bins, density=True, alpha=0.5, label="posterior predictive")
    ax.hist(observed, bins=bins, density=True, histtype="step", color="black", label="observed")
    ax.set_title("posterior predictive check (all coordinates)")
    ax.legend()
    save_figure_at(fig, path)


def diagnose(run_dir, data=None, mcmc: bool = False, out=None, *, num_draws: int = 500,
             num_samples: int = 300, warmup: int = 300, chains: int = 2, khat_draws: int = 200,
             seed: int = 0) -> dict:
    """Diagnostics of the run in ``run_dir`` on ``data`` (default: the run's data), into ``out``
    (default: ``run_dir/diagnostics``). With ``mcmc`` the globals of a Bayesian model are drawn
    by NUTS on the collapsed model (or the model itself) instead of the guide. Returns a summary."""
    run = load_run(run_dir)
    out = Path(out) if out is not None else Path(run_dir) / "diagnostics"
    x, mask = _read(data, run.config)
    bayesian = has_global_latents(run.trained)
    if mcmc and not bayesian:
        raise ValueError(f"--mcmc needs a Bayesian model (global latents); {run.config['model']} "
                         "was fitted with maximum-likelihood globals (fit with --bayesian)")
    (out / "figures").mkdir(parents=True, exist_ok=True)
    if mcmc:
        result = run_nuts(run.trained, x, mask, num_samples=num_samples, warmup=warmup, chains=chains, seed=seed)
        idata = to_arviz(run.trained, x, mask, mcmc=result, seed=seed)
    else:
        idata = to_arviz(run.trained, x, mask, guide=run.guide, num_draws=num_draws, seed=seed)
    files = []
    if "posterior" in arviz_adapter.group_names(idata) and len(idata.posterior.data_vars):
        arviz_adapter.summary(idata, mcmc=mcmc).to_csv(out / "summary.csv")
        files.append("summary.csv")
    loo = {"elpd": None, "p_loo": None, "k_counts": None}
    if bayesian:  # LOO needs posterior draws of the globals; ML globals have none
        loo = arviz_adapter.loo(idata)
        loo_out = {k: v for k, v in loo.items() if k != "pareto_k"}
        (out / "loo.json").write_text(json.dumps(loo_out, indent=2) + "\n")
        files.append("loo.json")
    khat = None
    # a guide that samples nothing is the exact posterior of the local latents: without global
    # latents (Bayesian models) its importance weights are all equal
    if bayesian or not GUIDES[run.config["guide"]].deterministic:
        khat = psis_khat(run.trained, run.guide, x, mask, num_draws=khat_draws, seed=seed)
        pd.DataFrame({"row": np.arange(len(khat)), "khat": khat}).to_csv(out / "psis_khat.csv", index=False)
        files.append("psis_khat.csv")
    threshold = arviz_adapter.khat_threshold(khat_draws)
    if "posterior_predictive" in arviz_adapter.group_names(idata):  # not for rows observed by pyro.factor
        _ppc_figure(idata, out / "figures" / "ppc.png")
        files.append("figures/ppc.png")
    if mcmc:
        for name in ("trace", "forest"):
            if arviz_plot(f"plot_{name}", idata, out / "figures" / f"{name}.png") is not None:
                files.append(f"figures/{name}.png")
    summary = {
        "elpd_loo": loo["elpd"], "p_loo": loo["p_loo"], "pareto_k_counts": loo["k_counts"],
        "khat_threshold": threshold,
        "khat_share_above_threshold": None if khat is None else float(np.mean(khat > threshold)),
        "khat_median": None if khat is None else float(np.median(khat)),
        **({"khat_note": KHAT_EXACT_NOTE} if khat is None else {}),
        "mcmc": mcmc, "files": files,
    }
    (out / "diagnostics.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
