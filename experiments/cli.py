"""The ``dlvm`` command line: list, fit, evaluate, sample, run.

Every failure the user can cause ends in one line on stderr (``dlvm: error: ...``) and a
non-zero exit status; ``--debug`` shows the traceback instead.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from dlvm.guides import ENCODERS, GUIDES, default_elbo, pair
from dlvm.inference import ELBO_NAMES, OPTIMIZERS, CheckpointError, NonFiniteLossError, evaluate, fit
from dlvm.inference.engine import CHECKPOINT_NAME
from dlvm.inference.hooks import AtFinish
from dlvm.inference.data import as_observations, resolve_device, validation_split
from dlvm.inference.distributed import init_from_environment, rank_and_world
from dlvm.inference.em import DEFAULT_MAX_ITER, DEFAULT_TOL
from dlvm.inference.streaming import RowSource, open_rows
from dlvm.models import MODELS, build_model

from . import EXPERIMENTS
from .checks import OneLineParser, check_arguments
from .io import Table, note, read_data
from .provenance import data_location, data_record, resume_difference
from .report import run_experiments
from .runs import (
    DTYPES, apply_fit_defaults, check_output, is_time_series, load_run, model_data, run_data, set_learning_rate, staged_run,
    staging_dir, write_json, write_text_atomic,
)
from .uses import encode_run, forecast_run, score_run

#: guides that sample nothing, so the loss is deterministic and L-BFGS applies
DETERMINISTIC_GUIDES = ("exact", "enum")
#: the cap on epochs when --max-epochs is not given, per optimizer (EM iterations are cheap)
DEFAULT_MAX_EPOCHS = {"em": DEFAULT_MAX_ITER}
#: --tol when not given: EM's on the log-likelihood; gradient optimizers run to --max-epochs unless
#: --tol is given (the relative change of the loss averaged over 10 epochs against the 10 before:
#: on noisy minibatch losses a default would stop fits early), and L-BFGS stops on its own tolerances
DEFAULT_TOLS = {"em": DEFAULT_TOL}
EXIT_USER_ERROR = 2
EXIT_INTERNAL = 70
EXIT_INTERRUPTED = 130
#: data whose largest magnitude exceeds this share of the square root of the float type's
#: largest number overflows in the sums of squares every model takes
SCALE_LIMIT = 1e-6


def _sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"layer sizes must be positive integers, got {text!r}")
    return sizes


# ----------------------------------------------------------------------------- commands
def cmd_list(args) -> int:
    print("models:")
    for spec in MODELS.values():
        print(f"  {spec.name:<12} {spec.summary} (guides: {', '.join(spec.guides)})")
    print("guides:")
    for name, text in GUIDES.items():
        print(f"  {name:<12} {text}")
    print(f"encoders:     {', '.join(ENCODERS)}")
    print(f"elbos:        {', '.join(ELBO_NAMES)}")
    print(f"optimizers:   {', '.join(OPTIMIZERS)}")
    print("experiments:")
    for name, (_, text) in EXPERIMENTS.items():
        print(f"  {name:<16} {text}")
    print("data sets (use as --data NAME):")
    from .datasets import DATASETS

    for name, text in DATASETS.items():
        print(f"  {name:<16} {text}")
    return 0


def _model_options(args) -> dict:
    keys = ("latent_dim", "components", "states", "covariance", "likelihood", "cell", "noise_scale",
            "noise", "restarts", "trend_poly", "recon_weight", "ar_order", "prior_components")
    options = {k: getattr(args, k) for k in keys if getattr(args, k, None) is not None}
    if getattr(args, "no_feed_latent", False):
        options["feed_latent"] = False
    if getattr(args, "bayesian", False):
        options["bayesian"] = True
    if getattr(args, "no_residual", False):
        options["residual"] = False
    if getattr(args, "local_level", False):
        options["local_level"] = True
    if getattr(args, "seasonality", None):
        options["seasonality"] = list(args.seasonality)
    if getattr(args, "hidden", None) is not None:
        options["hidden"] = list(args.hidden)
    return options


def _guide_options(args) -> dict:
    options = {"guide_covariance": args.guide_covariance, "mask_input": args.missing == "mask",
               "baseline": args.baseline}
    if args.encoder is not None:
        options["encoder"] = args.encoder
    if args.hidden is not None:
        options["hidden"] = list(args.hidden)
    return options


def cmd_fit(args) -> int:
    if not getattr(args, "distributed", False):
        return _fit(args)
    try:
        return _fit(args)
    finally:
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def choose_optimizer(args, spec, mask) -> str:
    """The optimizer of a fit: ``--optimizer`` if given, else the model's declared default
    (``ModelSpec.default_optimizer``, closed-form EM for the classical models) with its exact or
    enumerated guide on complete, in-memory data and maximum-likelihood globals; L-BFGS for such
    a guide otherwise (missing values); Adam for sampling guides, streamed or distributed fits,
    and fits given a ``--batch-size`` (minibatch training asked for)."""
    if args.optimizer is not None:
        return args.optimizer
    guide_name = args.guide or spec.guides[0]
    if (guide_name not in DETERMINISTIC_GUIDES or args.bayesian or args.stream or args.distributed
            or args.batch_size is not None):
        return "adam"
    return spec.default_optimizer if mask is None and spec.default_optimizer == "em" else "lbfgs"


def _choose_guide(args, spec, optimizer: str) -> str:
    """The guide: ``--guide``, else the model's first; the exact one for L-BFGS and EM."""
    guide_name = args.guide or spec.guides[0]
    if optimizer in ("lbfgs", "em") and args.guide is None:
        exact = [g for g in spec.guides if g in DETERMINISTIC_GUIDES]
        if not exact:
            raise ValueError(f"--optimizer {optimizer} needs an exact guide, and {args.model} has none")
        guide_name = exact[0]
    if guide_name not in spec.guides:
        raise ValueError(f"guide {guide_name!r} does not pair with {args.model}; use one of: {', '.join(spec.guides)}")
    if optimizer == "em" and guide_name not in DETERMINISTIC_GUIDES:
        raise ValueError(f"--optimizer em uses the exact posterior, not the {guide_name} guide: drop --guide or the optimizer")
    if optimizer == "em" and (args.stream or args.distributed):
        raise ValueError("--optimizer em fits in-memory data in one process (no --stream or --distributed)")
    return guide_name


def check_fits_dtype(table: Table, dtype: str, source) -> None:
    """One-line errors for values a model's float type cannot hold: integers beyond its exact
    range, magnitudes whose squares overflow it."""
    info = np.finfo(dtype)
    exact = 2 ** (info.nmant + 1)
    if table.largest_integer > exact:
        raise ValueError(f"{source} holds integers up to {table.largest_integer}, beyond 2^{info.nmant + 1}: "
                         f"{dtype} cannot hold them exactly (pass --dtype float64 or scale them)")
    finite = np.abs(table.x[np.isfinite(table.x)]) if table.x.size else np.zeros(1)
    largest = float(finite.max()) if finite.size else 0.0
    if largest > SCALE_LIMIT * math.sqrt(info.max):
        raise ValueError(f"{source} holds values up to {largest:.3g}, too large for {dtype} arithmetic "
                         "(their squares overflow); rescale the data, e.g. standardise each column")


def _load_fit_data(args, spec, dtype: str):
    """(x, mask, columns, dtypes, shape) of the data to fit, streamed or read and checked."""
    if args.stream:
        if args.window or args.missing != "error" or spec.prepare is not None:
            raise ValueError("--stream reads the rows of a .npy/.csv file as they are (no --window, "
                             f"--missing mask or {args.model}'s data preparation)")
        x = open_rows(args.data)
        return x, None, x.columns, [str(x.dtype)] * x.shape[-1], x.shape
    table = read_data(args.data, args.missing, window=args.window, stride=args.stride,
                      ordered=is_time_series(args.model, args.window))
    check_fits_dtype(table, dtype, args.data)
    x, mask = model_data(args.model, table.x, table.mask)
    # an array's columns have positions, not names: nothing to match by name later
    return x, mask, table.columns if table.named else None, table.dtypes, table.x.shape


@dataclass
class Schedule:
    """The resolved training settings of a fit: optimizer, guide, ELBO, learning rate, epoch cap, tol."""

    optimizer: str
    guide: str
    elbo: str
    lr: float | None
    max_epochs: int
    tol: float | None


def schedule_for(args, spec, mask) -> Schedule:
    optimizer = choose_optimizer(args, spec, mask)
    guide_name = _choose_guide(args, spec, optimizer)
    elbo = args.elbo or default_elbo(guide_name)
    if elbo not in ELBO_NAMES:
        raise ValueError(f"unknown ELBO {elbo!r}; choose one of: {', '.join(ELBO_NAMES)}")
    max_epochs = args.max_epochs if args.max_epochs is not None else DEFAULT_MAX_EPOCHS.get(optimizer, 100)
    tol = args.tol if args.tol is not None else DEFAULT_TOLS.get(optimizer)
    lr = args.lr if args.lr is not None else spec.default_lr.get(guide_name)
    return Schedule(optimizer, guide_name, elbo, lr, max_epochs, tol)


def fit_config(args, plan: Schedule, dtype: str, event_shape, columns, dtypes) -> dict:
    """Everything that makes the fit what it is, and the data it was made from."""
    return {
        "model": args.model, "model_options": _model_options(args), "guide": plan.guide,
        "guide_options": _guide_options(args), "event_shape": list(event_shape), "dtype": dtype,
        "elbo": plan.elbo, "optimizer": plan.optimizer, "lr": plan.lr, "lr_decay": args.lr_decay,
        "epochs": plan.max_epochs, "tol": plan.tol, "batch_size": args.batch_size,
        "num_particles": args.num_particles,
        "alpha": args.alpha, "seed": args.seed, "clip_norm": args.clip_norm, "early_stopping": args.early_stopping,
        "checkpoint_every": args.checkpoint_every, "iwae_samples": args.iwae_samples,
        "validation": args.validation,
        "data": data_location(args.data), "data_file": data_record(args.data), "missing": args.missing,
        "columns": [str(c) for c in columns] if columns is not None else None,
        "dtypes": list(dtypes or []), "window": args.window, "stride": args.stride, "stream": bool(args.stream),
    }


def check_resume(out: Path, config: dict, allow_new_lr: bool) -> None:
    """Refuse to ``--resume`` an interrupted run on other data or other settings (one line naming
    the difference); with ``allow_new_lr`` a new learning rate is written into its checkpoint."""
    stage = staging_dir(out)
    checkpoint = stage / CHECKPOINT_NAME
    if not checkpoint.is_file() or not (stage / "config.json").is_file():
        return
    try:
        old = json.loads((stage / "config.json").read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ValueError(f"{stage / 'config.json'} is not valid JSON; start again without --resume") from None
    if not isinstance(old, dict):
        raise ValueError(f"{stage / 'config.json'} does not hold a JSON object; start again without --resume")
    difference = resume_difference(old, config, allowed=("lr",) if allow_new_lr else ())
    if difference:
        raise ValueError(f"--resume: the interrupted run in {stage} was fitted with {difference}")
    if allow_new_lr and old.get("lr") != config["lr"]:
        epoch = set_learning_rate(checkpoint, default_lr(config), config.get("lr_decay") or 1.0)
        config["lr_changes"] = [*old.get("lr_changes", []), {"epoch": epoch, "from": old.get("lr")}]


def default_lr(config: dict) -> float:
    """The learning rate a fit uses: the given one, else the engine's default for the optimizer."""
    if config["lr"] is not None:
        return config["lr"]
    return 1.0 if config["optimizer"] == "lbfgs" else 1e-2


def _fit(args) -> int:
    if args.model not in MODELS:
        raise ValueError(f"unknown model {args.model!r}; choose one of: {', '.join(MODELS)}")
    if args.elbo is not None and args.elbo not in ELBO_NAMES:
        raise ValueError(f"unknown ELBO {args.elbo!r}; choose one of: {', '.join(ELBO_NAMES)}")
    spec = MODELS[args.model]
    apply_fit_defaults(args, spec)
    dtype = args.dtype or spec.dtype
    out = Path(args.out)
    check_output(out, args.overwrite, _input_paths(args.data))
    x, mask, columns, dtypes, shape = _load_fit_data(args, spec, dtype)
    plan = schedule_for(args, spec, mask)
    event_shape = tuple(x.shape[1:])
    config = fit_config(args, plan, dtype, event_shape, columns, dtypes)
    torch.manual_seed(args.seed)
    model = build_model(args.model, event_shape, config["model_options"]).to(DTYPES[dtype])
    trained, guide = pair(model, plan.guide, event_shape, **config["guide_options"])
    rank, world = 0, 1
    if args.distributed:
        device = init_from_environment(args.device)
        rank, world = rank_and_world()
    else:
        device = resolve_device(args.device)
    val_x = val_mask = None
    if args.validation > 0:  # stop on (and restore the best epoch of) held-out rows
        x, mask, val_x, val_mask = validation_split(x, mask, args.validation, args.seed)
    options = dict(
        val_data=val_x, val_mask=val_mask, mask=mask, elbo=plan.elbo, optimizer=plan.optimizer, tol=plan.tol,
        lr=plan.lr, lr_decay=args.lr_decay, epochs=plan.max_epochs, batch_size=args.batch_size,
        num_particles=args.num_particles, alpha=args.alpha, device=device, seed=args.seed,
        clip_norm=args.clip_norm, early_stopping=args.early_stopping, checkpoint_every=args.checkpoint_every,
        resume=args.resume, config=config, distributed=args.distributed,
        hooks=[AtFinish(lambda: model.fit_sampling_prior(x, guide, mask))]
        if hasattr(model, "fit_sampling_prior") and not args.stream else [],
    )
    if rank > 0:  # the other ranks train alongside rank 0, which alone writes the run folder
        fit(trained, guide, x, checkpoint_dir=None, progress=False, **options)
        return 0
    with staged_run(out, overwrite=args.overwrite, resume=args.resume, protect=_input_paths(args.data)) as stage:
        if args.resume:
            check_resume(out, config, args.allow_new_lr)
        write_json(stage / "config.json", config)
        began = time.perf_counter()
        result = fit(trained, guide, x, checkpoint_dir=stage, progress=not args.quiet, **options)
        seconds = time.perf_counter() - began
        result.history.to_csv(stage / "history.csv", index=False)
        scores = scores_per_observation(trained, guide, x, mask, args.iwae_samples)
        converged = result.converged or result.stopped_early
        metrics = {
            **scores, "n_rows": int(shape[0]), "n_features": int(shape[-1]),
            "fit_seconds": round(seconds, 3), "epochs_run": result.epochs_run, "converged": bool(result.converged),
            "optimizer": plan.optimizer, "model": args.model, "guide": plan.guide, "elbo_name": plan.elbo,
            "num_parameters": int(model.num_parameters()), "device": str(device), "processes": world,
        }
        write_json(stage / "metrics.json", metrics)
    if not converged and plan.tol is not None:
        print(cap_message(plan.optimizer, plan.max_epochs, plan.tol), file=sys.stderr)
    if not args.quiet:
        print(json.dumps(metrics, indent=2))
    return 0


def cap_message(optimizer: str, max_epochs: int, tol: float | None) -> str:
    """The one line a fit that stopped at its epoch cap prints on stderr."""
    criterion = f"changes below --tol {tol:g}" if tol is not None else "stops changing"
    return (f"dlvm: {optimizer} stopped at the cap of {max_epochs} epochs before the fit {criterion}; "
            "raise --max-epochs to train longer")


def scores_per_observation(trained, guide, x, mask, iwae_samples: int) -> dict:
    """ELBO, IWAE-K, exact log-likelihood and gap in nats per observation: per row for a table,
    per time step for a sequence model (``observations_per_row``)."""
    result = evaluate(trained, guide, x, mask, num_samples=iwae_samples)
    if isinstance(x, RowSource):  # no mask: every row holds as many observations as the first
        count = float(trained.observations_per_row(torch.as_tensor(x.rows(0, 1))).sum()) * len(x)
    else:
        xt, mt = as_observations(x, mask, dtype=result.elbo.dtype)
        count = float(trained.observations_per_row(xt, mt).sum())
    scores = {"elbo": float(result.elbo.sum()) / count, "iwae": float(result.iwae.sum()) / count,
              "iwae_samples": result.num_samples, "log_likelihood": None, "gap": None,
              "n_observations": int(count)}
    if result.log_likelihood is not None:
        scores["log_likelihood"] = float(result.log_likelihood.sum()) / count
        scores["gap"] = scores["log_likelihood"] - scores["elbo"]
    return scores


def cmd_evaluate(args) -> int:
    run = load_run(args.run, device=resolve_device(args.device))
    if args.missing is not None:
        run.config["missing"] = args.missing
    if run.config.get("stream"):
        x, mask = open_rows(args.data or run.config["data"]), None
        if x.row_shape != tuple(run.config["event_shape"]):
            raise ValueError(f"data rows have shape {x.row_shape}, the model expects {tuple(run.config['event_shape'])}")
        fitted_on = run.config.get("columns")
        if x.columns is not None and fitted_on and list(x.columns) != list(fitted_on):
            raise ValueError(f"{args.data} has columns {', '.join(x.columns)}; the run was fitted on "
                             f"{', '.join(fitted_on)} in that order (streamed data is not reordered)")
    else:
        x, mask = run_data(run.config, args.data)
    scores = scores_per_observation(run.trained, run.guide, x, mask, args.iwae_samples)
    print(json.dumps({**scores, "n_rows": len(x), "model": run.config["model"],
                      "guide": run.config["guide"]}, indent=2))
    return 0


def _input_paths(*names) -> list[Path]:
    """The given data or run arguments that are paths on disk (never to be replaced by an output)."""
    return [Path(n) for n in names if n is not None and Path(n).exists()]


def _write_csv(frame, out: Path, overwrite: bool) -> None:
    out = Path(out)
    if not out.name or out.name in (".", "..") or out.is_dir():
        raise ValueError(f"--out {str(out)!r} is a folder; give a CSV file name")
    if out.exists() and not overwrite:
        raise ValueError(f"{out} exists; pass --overwrite to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out, frame.to_csv(index=frame.index.name is not None))


def cmd_regimes(args) -> int:
    from .regimes import regime_table

    run = load_run(args.run)
    if not hasattr(run.model, "posterior") or not hasattr(run.model, "covariances"):
        raise ValueError(f"model {run.config['model']!r} has no regimes (use a gmm or hmm run)")
    x, mask, index = run_data(run.config, args.data, with_index=True)
    rows = x.shape[0] * (x.shape[1] if x.ndim == 3 else 1)  # a row per time step for an HMM
    frame = regime_table(run.model, x, mask, index=index if index is not None and len(index) == rows else None)
    _write_csv(frame, args.out, args.overwrite)
    print(f"wrote {len(frame)} rows of regimes to {args.out}")
    return 0


def cmd_anomaly(args) -> int:
    run = load_run(args.run)
    frame, scores = score_run(run, args.data, args.iwae_samples, args.seed)
    _write_csv(frame, args.out, args.overwrite)
    print(f"wrote {len(frame)} anomaly scores ({scores.description}, nats per row; percentiles against the "
          f"training data) to {args.out}")
    return 0


def cmd_encode(args) -> int:
    run = load_run(args.run)
    frame, found = encode_run(run, args.data, args.samples, args.seed)
    _write_csv(frame, args.out, args.overwrite)
    print(f"wrote the posterior means and sds of z ({found.mean.shape[1]} dims, {found.method}) "
          f"of {len(frame)} rows to {args.out}")
    return 0


def cmd_forecast(args) -> int:
    run = load_run(args.run)
    if args.missing is not None:
        run.config["missing"] = args.missing
    frame, found = forecast_run(run, args.data, args.horizon, args.samples, args.seed, args.particles)
    _write_csv(frame, args.out, args.overwrite)
    what = f"the last {args.horizon} steps of each window" if args.horizon else "the missing entries"
    print(f"wrote the predictive mean, sd and quantiles of {what} ({len(frame)} entries, {found.method}, "
          f"{args.samples} draws) to {args.out}")
    return 0


def _keyword_arrays(path: str) -> dict:
    """The arrays of an .npz file as keyword arguments of a user's model (floats in torch's default dtype)."""
    if not str(path).endswith(".npz"):
        raise ValueError("a model from a Python file takes its arguments from an .npz file (one array per keyword)")
    with np.load(path, allow_pickle=False) as arrays:
        values = {k: torch.as_tensor(arrays[k]) for k in arrays.files}
    return {k: v.to(torch.get_default_dtype()) if v.is_floating_point() else v for k, v in values.items()}


def cmd_compare(args) -> int:
    from .estimators import compare, compare_user_model, load_callable

    if ":" in args.model:  # a user's own Pyro model, FILE.py:NAME
        model = load_callable(args.model)
        elbos = [e.strip() for e in args.elbos.split(",") if e.strip()] if args.elbos else None
        with staged_run(Path(args.out), overwrite=args.overwrite, protect=_input_paths(args.data)) as stage:
            compare_user_model(model, args.guide or "auto-normal", _keyword_arrays(args.data), elbos, stage,
                               label=args.model.rpartition(":")[2], num_draws=args.draws, steps=args.steps,
                               seed=args.seed)
        print(f"wrote the estimator comparison to {args.out}")
        return 0
    if args.guide is not None:
        raise ValueError("--guide is for a model from a Python file; dlvm's models compare every guide they pair with")
    if args.model not in MODELS:
        raise ValueError(f"unknown model {args.model!r}; choose one of: {', '.join(MODELS)}")
    table = read_data(args.data, window=args.window)
    x, _ = model_data(args.model, table.x, None)
    elbos = [e.strip() for e in args.elbos.split(",") if e.strip()] if args.elbos else None
    unknown = [e for e in elbos or [] if e.split(":")[0] not in ELBO_NAMES]
    if unknown or (args.elbos is not None and not elbos):
        raise ValueError(f"unknown estimator {unknown[0] if unknown else args.elbos!r} in --elbos; "
                         f"choose from: {', '.join(ELBO_NAMES)}")
    options = dict(MODELS[args.model].example_options)
    options.update(_model_options(args))
    with staged_run(Path(args.out), overwrite=args.overwrite, protect=_input_paths(args.data)) as stage:
        compare(args.model, x, elbos, stage, options=options, steps=args.steps, num_draws=args.draws,
                seed=args.seed)
    print(f"wrote the estimator comparison to {args.out}")
    return 0


def cmd_diagnose(args) -> int:
    from .diagnose import diagnose

    out = Path(args.out) if args.out else Path(args.run) / "diagnostics"
    with staged_run(out, overwrite=args.overwrite, protect=_input_paths(args.data, args.run)) as stage:
        summary = diagnose(args.run, args.data, args.mcmc, stage, seed=args.seed)
    print(json.dumps(summary, indent=2, default=str))
    return 0


def _write_samples(draws: np.ndarray, out: Path, columns) -> None:
    """``draws`` to ``out`` (.npz key ``data``, .npy, or .csv with a quoted header) atomically."""
    if out.suffix == ".csv" and draws.ndim != 2:
        raise ValueError(f"samples of shape {draws.shape[1:]} do not fit a CSV table; use .npz")
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".csv":
        names = columns if columns and len(columns) == draws.shape[1] else [f"x{i}" for i in range(draws.shape[1])]
        write_text_atomic(out, pd.DataFrame(draws, columns=names).to_csv(index=False))
        return
    tmp = out.with_name(f".{out.name}.tmp{out.suffix}")
    try:
        if out.suffix == ".npz":
            np.savez(tmp, data=draws)
        else:
            np.save(tmp, draws)
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)


def cmd_sample(args) -> int:
    out = Path(args.out)
    if not out.name or out.name in (".", ".."):
        raise ValueError(f"--out {args.out!r} names no file; give a file name ending in .npz, .npy or .csv")
    if out.suffix not in (".npz", ".npy", ".csv"):
        raise ValueError(f"{out}: choose an output ending in .npz, .npy or .csv")
    if out.is_dir():
        raise ValueError(f"output {out} is a folder; give a file name ending in .npz, .npy or .csv")
    if out.exists() and not args.overwrite:
        raise ValueError(f"{out} exists; pass --overwrite to replace it")
    run = load_run(args.run, device=resolve_device(args.device))
    if not hasattr(run.model, "sample"):
        raise ValueError(f"model {run.config['model']!r} cannot generate samples")
    torch.manual_seed(args.seed)
    draws = (run.model.sample(args.n, noise=False) if args.mean else run.model.sample(args.n)).detach().cpu().numpy()
    if not np.isfinite(draws).all():
        raise ValueError(f"the model of {args.run} drew {int((~np.isfinite(draws)).sum())} non-finite value(s); "
                         "nothing was written")
    _write_samples(draws, out, run.config.get("columns"))
    print(f"wrote {args.n} samples of shape {tuple(draws.shape[1:])} to {out}")
    return 0


def cmd_score(args) -> int:
    from .sequences import load_npz_sequences
    from .timegan_metrics import balanced_size, timegan_scores

    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()]
    real, synthetic = load_npz_sequences(args.real), load_npz_sequences(args.synthetic)
    if "discriminative" in metrics and len(real) != len(synthetic):
        size = balanced_size(len(real), len(synthetic))
        larger = "real" if len(real) > len(synthetic) else "synthetic"
        note(f"the discriminative score uses {size} of the {max(len(real), len(synthetic))} {larger} windows "
             "in each repeat (as many real as synthetic)")
    scores = timegan_scores(real, synthetic, metrics,
                            repeats=args.repeats, seed=args.seed, device=resolve_device(args.device),
                            discriminative_steps=args.discriminative_steps, predictive_steps=args.predictive_steps)
    print(json.dumps(scores, indent=2 if args.pretty else None))
    return 0


def cmd_run(args) -> int:
    names = list(EXPERIMENTS) if args.name == "all" else [args.name]
    for name in names:
        if name not in EXPERIMENTS:
            raise ValueError(f"unknown experiment {name!r}; choose one of: all, {', '.join(EXPERIMENTS)}")
    out = Path(args.out or f"runs/{args.name}")
    resolve_device(args.device)
    report = run_experiments(
        names, out, quick=args.quick, seed=args.seed, device=args.device,
        progress=not args.quiet, overwrite=args.overwrite,
    )
    if not args.quiet:
        print(f"report: {report}")
    return 0


# ----------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="dlvm", description="Deep latent variable models on Pyro.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("list", help="models, guides, ELBOs, experiments and data sets").set_defaults(func=cmd_list)

    p = sub.add_parser("fit", help="fit a model to a data file and write a run folder")
    p.add_argument("model", help="model name (see dlvm list)")
    p.add_argument("--data", required=True, help="CSV/.npy/.npz file, or a data set name")
    p.add_argument("--out", required=True, help="run folder to write")
    p.add_argument("--latent-dim", type=int, help="size of the latent z")
    p.add_argument("--components", type=int, help="mixture components")
    p.add_argument("--states", type=int, help="hidden states of an HMM")
    p.add_argument("--covariance", choices=("full", "diag"), help="component covariance of a mixture/HMM")
    p.add_argument("--likelihood", help="decoder likelihood (gaussian, bernoulli, ...)")
    p.add_argument("--cell", choices=("gru", "lstm", "transformer"), help="VRAE decoder: recurrent cell, or self-attention")
    p.add_argument("--window", type=int, help="cut a table of time steps into windows of this many steps")
    p.add_argument("--stride", type=int, help="steps between window starts (default: the window)")
    p.add_argument("--noise-scale", type=float, help="noise scale of a fixed-variance Gaussian decoder")
    p.add_argument("--no-feed-latent", action="store_true", help="VRAE: z sets the decoder's initial state only")
    p.add_argument("--noise", choices=("isotropic", "diagonal"), help="noise of the mixture of PPCA")
    p.add_argument("--restarts", type=int, help="random starts of a mixture/HMM initialisation")
    p.add_argument("--bayesian", action="store_true", help="priors on the global parameters")
    p.add_argument("--baseline", default="neural", choices=("neural", "decaying", "none"),
                   help="score-function baseline of discrete amortized guides (tracegraph)")
    p.add_argument("--trend-poly", type=int, metavar="P", help="TimeVAE: polynomial trend block of degree P")
    p.add_argument("--seasonality", nargs="+", metavar="S:L",
                   help="TimeVAE: seasonal blocks of S seasons of L steps each")
    p.add_argument("--no-residual", action="store_true", help="TimeVAE: leave out the convolutional residual decoder")
    p.add_argument("--local-level", action="store_true", help="TimeVAE: a random-walk level block")
    p.add_argument("--ar-order", type=int, metavar="P", help="TimeVAE: a short-term AR(P) block driven by the latent")
    p.add_argument("--recon-weight", type=float, metavar="W",
                   help="TimeVAE: reconstruction weight (fixed Gaussian scale (2W)^-1/2; default 3)")
    p.add_argument("--prior-components", type=int, metavar="C",
                   help="TimeVAE: sample z from a C-component Gaussian mixture fitted to the codes (default 10; "
                        "0 = N(0, I))")
    p.add_argument("--hidden", type=_sizes, help="hidden layer sizes, e.g. 64,64")
    p.add_argument("--guide", help="guide name (default: the model's first)")
    p.add_argument("--encoder", help=f"encoder of amortized guides ({', '.join(ENCODERS)}); default: the model's")
    p.add_argument("--guide-covariance", default="diagonal", choices=("diagonal", "full"))
    p.add_argument("--elbo", help=f"estimator ({', '.join(ELBO_NAMES)}); default: the guide's")
    p.add_argument("--optimizer", choices=OPTIMIZERS,
                   help="default: em for fa, ppca, gmm, mppca and hmm with their exact guide, else adam")
    p.add_argument("--max-epochs", "--epochs", dest="max_epochs", type=int,
                   help=f"cap on epochs / EM iterations (default {DEFAULT_MAX_ITER} for em, 100 otherwise)")
    p.add_argument("--tol", type=float,
                   help=f"convergence tolerance: em, the change of the log-likelihood per observation (default "
                        f"{DEFAULT_TOL:g}); other optimizers, the relative change of the loss averaged over 10 "
                        "epochs against the 10 before (default: none, run to --max-epochs)")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--lr-decay", type=float, default=1.0, help="multiply the learning rate by this after every epoch")
    p.add_argument("--num-particles", type=int, default=1)
    p.add_argument("--alpha", type=float, default=0.0, help="alpha of the renyi ELBO (0 = IWAE)")
    p.add_argument("--clip-norm", type=float)
    p.add_argument("--early-stopping", type=int, metavar="PATIENCE")
    p.add_argument("--validation", type=float, metavar="FRACTION",
                   help="share of rows held out to stop on (early stopping) and restore the best epoch of "
                        "(default: the model's; timevae 0.1, others 0)")
    p.add_argument("--iwae-samples", type=int, default=100)
    p.add_argument("--dtype", choices=tuple(DTYPES))
    p.add_argument("--missing", choices=("error", "mask"), default="error")
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--checkpoint-every", type=float, default=10.0, metavar="SECONDS",
                   help="write checkpoint.pt at the end of an epoch this often (and after the last)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted fit into --out")
    p.add_argument("--allow-new-lr", action="store_true",
                   help="with --resume: continue with a learning rate other than the interrupted run's")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run folder")
    p.add_argument("--stream", action="store_true",
                   help="read the rows of a .npy/.csv file from disk per minibatch (data larger than memory)")
    p.add_argument("--distributed", action="store_true",
                   help="data parallel over the processes started by torchrun (rank 0 writes --out)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_fit)

    p = sub.add_parser("evaluate", help="ELBO, IWAE-K and exact log-likelihood of a run on data")
    p.add_argument("run")
    p.add_argument("--data", help="file or data set (default: the run's data)")
    p.add_argument("--iwae-samples", type=int, default=100)
    p.add_argument("--missing", choices=("error", "mask"), help="default: as the run was fitted")
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("sample", help="draw from a fitted model")
    p.add_argument("run")
    p.add_argument("-n", type=int, required=True)
    p.add_argument("--out", required=True, help=".npz (key 'data'), .npy or .csv")
    p.add_argument("--mean", action="store_true",
                   help="decoder means E[x | z] instead of draws from the full predictive p(x | z)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("regimes", help="most probable regime and regime probabilities per row (gmm, hmm)")
    p.add_argument("run")
    p.add_argument("--out", required=True, help="CSV file to write")
    p.add_argument("--data", help="file or data set (default: the run's data)")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cmd_regimes)

    p = sub.add_parser("anomaly", help="anomaly scores per row: negative log-likelihood (exact or IWAE-K), "
                                       "its standard error, percentile against the training data")
    p.add_argument("run")
    p.add_argument("--data", help="file or data set to score (default: the run's data)")
    p.add_argument("--out", required=True, help="CSV file to write")
    p.add_argument("--iwae-samples", type=int, default=100, help="K of IWAE-K where no exact likelihood exists")
    p.add_argument("--seed", type=int, default=0, help="random state of the importance draws")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cmd_anomaly)

    p = sub.add_parser("encode", help="posterior means and sds of the latent z per row")
    p.add_argument("run")
    p.add_argument("--data", help="file or data set to encode (default: the run's data)")
    p.add_argument("--out", required=True, help="CSV file to write")
    p.add_argument("--samples", type=int, default=100, help="draws of the guide where it has no closed-form moments")
    p.add_argument("--seed", type=int, default=0, help="random state of the guide's draws")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cmd_encode)

    p = sub.add_parser("forecast", help="forecast the last steps of each window, or impute missing entries, "
                                        "from the model's predictive distribution")
    p.add_argument("run")
    p.add_argument("--data", help="file or data set (default: the run's data)")
    p.add_argument("--horizon", type=int, help="steps to forecast at the end of each window (else impute "
                                               "the data's missing entries)")
    p.add_argument("--out", required=True, help="CSV file to write")
    p.add_argument("--samples", type=int, default=200, help="predictive draws per entry")
    p.add_argument("--particles", type=int, default=256, help="importance particles of z per row (decoder models)")
    p.add_argument("--missing", choices=("error", "mask"), help="default: as the run was fitted")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cmd_forecast)

    p = sub.add_parser("compare", help="compare ELBOs and gradient estimators on a model")
    p.add_argument("model", help="a registered model, or your own Pyro model as FILE.py:NAME")
    p.add_argument("--data", required=True, help="data file; for FILE.py:NAME an .npz whose arrays are its keyword arguments")
    p.add_argument("--guide", help="for FILE.py:NAME: auto-normal (default), auto-diagonal-normal, "
                                   "auto-multivariate-normal, auto-delta, or FILE.py:NAME")
    p.add_argument("--out", required=True)
    p.add_argument("--elbos", help="comma-separated estimators, e.g. trace,tracegraph,renyi:0.5")
    p.add_argument("--latent-dim", type=int)
    p.add_argument("--components", type=int)
    p.add_argument("--states", type=int)
    p.add_argument("--window", type=int)
    p.add_argument("--steps", type=int, default=300, help="training steps of each curve")
    p.add_argument("--draws", type=int, default=100, help="gradient draws per estimator")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("diagnose", help="ArviZ summary, LOO, PSIS k-hat and predictive checks of a run")
    p.add_argument("run")
    p.add_argument("--data", help="file or data set (default: the run's data)")
    p.add_argument("--mcmc", action="store_true", help="draw the globals by NUTS (Bayesian models)")
    p.add_argument("--out", help="folder (default: RUN/diagnostics)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cmd_diagnose)

    p = sub.add_parser("score", help="discriminative and predictive scores (TimeGAN) and correlational score "
                                     "(Diffusion-TS) of synthetic vs real windows, as one JSON line")
    p.add_argument("--real", required=True, help=".npz of real windows (N, T, D), key 'data'")
    p.add_argument("--synthetic", required=True, help=".npz of synthetic windows, e.g. from dlvm sample")
    p.add_argument("--metrics", default="discriminative,predictive,correlational")
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--discriminative-steps", type=int, default=2000, help="training steps of each classifier")
    p.add_argument("--predictive-steps", type=int, default=5000, help="training steps of each predictor")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--pretty", action="store_true", help="indented JSON instead of one line")
    p.set_defaults(func=cmd_score)

    p = sub.add_parser("run", help="run an experiment (or all) and write its report")
    p.add_argument("name", help="experiment name or 'all'")
    p.add_argument("--out")
    p.add_argument("--quick", action="store_true", help="small, fast settings")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_run)
    return parser


def user_error_line(err: Exception) -> str:
    """The one line shown for an error the input caused."""
    message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    if isinstance(err, OSError) and err.filename:
        return f"{err.strerror or message}: {err.filename}"
    if isinstance(err, MemoryError):
        return "not enough memory for this command (use fewer rows, samples or a smaller model)"
    if isinstance(err, torch.linalg.LinAlgError):
        return ("the data's covariance could not be factorised (a column may be constant, duplicated or "
                f"badly scaled; {message[:100]})")
    return message


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        check_arguments(args)
        return args.func(args)
    except (ValueError, OSError, CheckpointError, NonFiniteLossError, torch.linalg.LinAlgError, MemoryError) as err:
        if args.debug:
            raise
        print(f"dlvm: error: {user_error_line(err)}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("dlvm: interrupted (an interrupted fit continues with --resume)", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as err:  # a bug: still one line, with the way to see more
        if args.debug:
            raise
        print(f"dlvm: internal error: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''} "
              "(rerun with --debug for the traceback)", file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
