"""TimeVAE from its default settings, repeated: the scores a user gets on data it was not tuned on.

For each data set (TimeGAN sines, TimeGAN's Google stock windows, the noisy sensor windows of
:func:`~dlvm.experiments.datasets.noisy_sensors`) and each recipe, every seed fits a fresh TimeVAE
exactly as ``dlvm fit timevae`` does with no flags (the training settings of
``MODELS["timevae"].fit_defaults``: 10 % of the windows held out, Adam at 1e-3 on batches of 64,
early stopping on the held-out ELBO with the best epoch restored, the sampling prior fitted to
the codes), within a wall-clock budget, draws as many windows as the real set has (as
``dlvm sample`` does) and scores them against the real set (:func:`timegan_scores`). The rows
give mean and sd over seeds (the honest spread: each seed is a new fit and a new scoring).

Recipes: ``default`` (no options); ``paper`` (the published TimeVAE recipe: reconstruction weight
3, i.e. a fixed sigma = 0.41 on [0, 1] data, samples E[x | z], z ~ N(0, I)); ``independent`` (the
earlier defaults: a learned noise scale per feature, independent noise, z from a 10-component
Gaussian mixture fitted to the codes).

Run one data set with ``python -m dlvm.experiments.studies.timevae_defaults NAME --seeds 0,1,2,3,4 --out
FILE.csv`` (a row per seed and recipe, appended as each finishes).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..data.sets import noisy_sensors, timegan_sines, timegan_stocks
from ..reporting.timegan_metrics import METRICS, timegan_scores
from ...guides import pair
from ...inference import fit
from ...inference.data import validation_split
from ...inference.hooks import AtFinish, TimeLimit
from ...models import MODELS, build_model

RECIPES = {"default": {}, "paper": {"recon_weight": 3.0, "sampling_prior": "normal"},
           "independent": {"likelihood": "gaussian-feature", "sampling_prior": "mixture"}}
DATA = {"sines": lambda: timegan_sines(), "stocks": timegan_stocks, "sensors": noisy_sensors}


def fit_like_cli(data: np.ndarray, options: dict, seed: int, budget_s: float | None = None,
                 device: str = "cpu", max_epochs: int | None = None):
    """A TimeVAE fitted to windows (N, T, D) with ``dlvm fit timevae``'s default training settings
    (:attr:`ModelSpec.fit_defaults`), stopped after ``budget_s`` seconds at the latest.
    Returns (model, guide, FitResult)."""
    spec = MODELS["timevae"]
    settings = spec.fit_defaults
    torch.manual_seed(seed)
    model = build_model("timevae", data.shape[1:], options)
    trained, guide = pair(model, "amortized", data.shape[1:])
    x, _, val, _ = validation_split(data.astype(np.float32), None, settings["validation"], seed)
    hooks = [AtFinish(lambda: model.fit_sampling_prior(x, guide))]
    if budget_s is not None:
        hooks.append(TimeLimit(budget_s))
    result = fit(trained, guide, x, val_data=val, early_stopping=settings["early_stopping"],
                 epochs=max_epochs or settings["max_epochs"], batch_size=settings["batch_size"],
                 lr=spec.default_lr["amortized"], clip_norm=settings["clip_norm"], seed=seed, device=device,
                 progress=False, hooks=hooks)
    return model, guide, result


def score_recipe(name: str, real: np.ndarray, recipe: str, seed: int, *, budget_s: float | None,
                 metrics=METRICS, score_repeats: int = 3, discriminative_steps: int = 2000, predictive_steps: int = 5000,
                 device: str = "cpu", max_epochs: int | None = None) -> dict:
    """One row: fit ``recipe`` with ``seed``, draw len(real) windows, score them."""
    began = time.perf_counter()
    model, _, result = fit_like_cli(real, RECIPES[recipe], seed, budget_s, device, max_epochs)
    seconds = time.perf_counter() - began
    torch.manual_seed(seed + 1)
    fake = model.sample(len(real)).detach().cpu().numpy().astype(np.float64)
    scores = timegan_scores(real, fake, metrics, repeats=score_repeats, seed=seed, device=device,
                            discriminative_steps=discriminative_steps, predictive_steps=predictive_steps)
    return {"dataset": name, "recipe": recipe, "seed": seed, **scores, "epochs": result.epochs_run,
            "best_epoch": result.best_epoch, "fit_seconds": round(seconds, 1)}


def summarize(rows: pd.DataFrame) -> pd.DataFrame:
    """Mean and sd (ddof 1) over seeds of each score, per data set and recipe, with the count."""
    metrics = [m for m in ("discriminative", "predictive", "correlational", "fit_seconds") if m in rows]
    grouped = rows.groupby(["dataset", "recipe"])[metrics]
    table = grouped.mean().add_suffix("_mean").join(grouped.std(ddof=1).add_suffix("_sd"))
    return table.join(grouped.size().rename("repeats")).reset_index()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", choices=tuple(DATA))
    parser.add_argument("--recipes", default=",".join(RECIPES))
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--budget", type=float, default=600.0, help="seconds of training per fit at most")
    parser.add_argument("--max-epochs", type=int, help="training epochs per fit at most (a budget that does not "
                        "depend on the machine's load; default: the model's own cap)")
    parser.add_argument("--windows", type=int, help="use the first N windows only")
    parser.add_argument("--metrics", default=",".join(METRICS))
    parser.add_argument("--score-repeats", type=int, default=3)
    parser.add_argument("--discriminative-steps", type=int, default=2000)
    parser.add_argument("--predictive-steps", type=int, default=5000)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    real = DATA[args.dataset]()[: args.windows]
    out = Path(args.out)
    for recipe in args.recipes.split(","):  # every seed of a recipe before the next recipe
        for seed in (int(s) for s in args.seeds.split(",")):
            row = score_recipe(args.dataset, real, recipe, seed, budget_s=args.budget,
                               metrics=args.metrics.split(","), score_repeats=args.score_repeats, discriminative_steps=args.discriminative_steps,
                               predictive_steps=args.predictive_steps, max_epochs=args.max_epochs)
            pd.DataFrame([row]).to_csv(out, mode="a", header=not out.exists(), index=False)
            print(row, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
