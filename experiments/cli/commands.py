"""What each ``dlvm`` command does, given its parsed arguments (the parser is in main.py).

Every ``cmd_*`` returns the exit status; a failure the user caused is raised as a one-line
ValueError (or OSError, ...) that :func:`dlvm.experiments.cli.main.main` prints.
"""
from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ...guides import ENCODERS, GUIDES, check_pairs, default_elbo
from ...inference import ELBO_NAMES, OPTIMIZERS, evaluate, fit
from ...inference.data import as_observations, validation_split
from ...inference.distributed import init_from_environment, leave_process_group, rank_and_world
from ...inference.em import DEFAULT_MAX_ITER, DEFAULT_TOL
from ...inference.engine import CHECKPOINT_NAME
from ...inference.hooks import AtFinish
from ...inference.optim import default_lr
from ...inference.streaming import RowSource, open_rows
from ...models import MODELS
from .. import EXPERIMENTS
from ..data import DATASETS, Table, note, read_data
from ..data.windows import load_npz_sequences
from ..reporting.report import run_experiments
from ..reporting.timegan_metrics import balanced_size, timegan_scores
from ..runs.diagnose import diagnose
from ..runs.folders import (
    apply_fit_defaults, build_pair, check_event_shape, check_output, is_time_series, load_run, model_data, run_data,
    set_learning_rate, staged_run, staging_dir, write_json, write_text_atomic,
)
from ..runs.provenance import data_location, data_record, resume_difference
from ..runs.compare import compare, compare_user_model, load_callable
from ..runs.uses import encode_run, forecast_run, regime_table, score_run
from .flags import model_options

#: the cap on epochs when --max-epochs is not given, per optimizer (EM iterations are cheap)
DEFAULT_MAX_EPOCHS = {"em": DEFAULT_MAX_ITER}
#: --tol when not given: EM's on the log-likelihood; gradient optimizers run to --max-epochs unless
#: --tol is given (the relative change of the loss averaged over 10 epochs against the 10 before:
#: on noisy minibatch losses a default would stop fits early), and L-BFGS stops on its own tolerances
DEFAULT_TOLS = {"em": DEFAULT_TOL}
#: data whose largest magnitude exceeds this share of the square root of the float type's
#: largest number overflows in the sums of squares every model takes
SCALE_LIMIT = 1e-6


# ----------------------------------------------------------------------------- commands
def cmd_list(args) -> int:
    print("models:")
    for spec in MODELS.values():
        print(f"  {spec.name:<12} {spec.summary} (guides: {', '.join(spec.guides)})")
    print("guides:")
    for name, family in GUIDES.items():
        print(f"  {name:<12} {family.summary}")
    print(f"encoders:     {', '.join(ENCODERS)}")
    print(f"elbos:        {', '.join(ELBO_NAMES)}")
    print(f"optimizers:   {', '.join(OPTIMIZERS)}")
    print("experiments:")
    for name, (_, text) in EXPERIMENTS.items():
        print(f"  {name:<16} {text}")
    print("data sets (use as --data NAME):")
    for name, data_set in DATASETS.items():
        print(f"  {name:<16} {data_set.summary}")
    return 0


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
        code = _fit(args)
    except BaseException:
        leave_process_group(wait=False)
        raise
    leave_process_group()
    return code


def choose_optimizer(args, spec, mask) -> str:
    """The optimizer of a fit: ``--optimizer`` if given, else the model's declared default
    (``ModelSpec.default_optimizer``, closed-form EM for the classical models) with its exact or
    enumerated guide on in-memory data and maximum-likelihood globals, complete or with missing
    values where the model's EM takes them (``ModelSpec.em_missing``); L-BFGS for such a guide
    otherwise; Adam for sampling guides, streamed or distributed fits, and fits given a
    ``--batch-size`` (minibatch training asked for)."""
    if args.optimizer is not None:
        return args.optimizer
    guide_name = args.guide or spec.guides[0]
    if (not GUIDES.lookup(guide_name).deterministic or args.bayesian or args.stream or args.distributed
            or args.batch_size is not None):
        return "adam"
    return "em" if spec.default_optimizer == "em" and (mask is None or spec.em_missing) else "lbfgs"


def _choose_guide(args, spec, optimizer: str) -> str:
    """The guide: ``--guide``, else the model's first; the exact one for L-BFGS and EM."""
    guide_name = args.guide or spec.guides[0]
    if optimizer in ("lbfgs", "em") and args.guide is None:
        exact = [g for g in spec.guides if GUIDES[g].deterministic]
        if not exact:
            raise ValueError(f"--optimizer {optimizer} needs an exact guide, and {args.model} has none")
        guide_name = exact[0]
    check_pairs(spec.cls, guide_name)
    if optimizer == "em" and not GUIDES[guide_name].deterministic:
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
    elbo = args.elbo or default_elbo(guide_name)  # a given --elbo is checked before any work (_fit)
    max_epochs = args.max_epochs if args.max_epochs is not None else DEFAULT_MAX_EPOCHS.get(optimizer, 100)
    tol = args.tol if args.tol is not None else DEFAULT_TOLS.get(optimizer)
    lr = args.lr if args.lr is not None else spec.default_lr.get(guide_name)
    return Schedule(optimizer, guide_name, elbo, lr, max_epochs, tol)


def fit_config(args, plan: Schedule, dtype: str, event_shape, columns, dtypes) -> dict:
    """Everything that makes the fit what it is, and the data it was made from."""
    return {
        "model": args.model, "model_options": model_options(args, args.model), "guide": plan.guide,
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
        epoch = set_learning_rate(checkpoint, default_lr(config["optimizer"], config["lr"]), config.get("lr_decay") or 1.0)
        config["lr_changes"] = [*old.get("lr_changes", []), {"epoch": epoch, "from": old.get("lr")}]


def _fit(args) -> int:
    spec = MODELS.lookup(args.model)
    spec.parse_options(model_options(args, args.model))  # the options, checked before any work
    if args.elbo is not None and args.elbo not in ELBO_NAMES:
        raise ValueError(f"unknown ELBO {args.elbo!r}; choose one of: {', '.join(ELBO_NAMES)}")
    apply_fit_defaults(args, spec)
    dtype = args.dtype or spec.dtype
    out = Path(args.out)
    check_output(out, args.overwrite, _input_paths(args.data))
    x, mask, columns, dtypes, shape = _load_fit_data(args, spec, dtype)
    plan = schedule_for(args, spec, mask)
    event_shape = tuple(x.shape[1:])
    config = fit_config(args, plan, dtype, event_shape, columns, dtypes)
    torch.manual_seed(args.seed)
    model, trained, guide = build_pair(config)
    rank, world = 0, 1
    if args.distributed:
        device = init_from_environment(args.device)  # this rank's GPU when the device is CUDA
        rank, world = rank_and_world()
    else:
        device = args.device
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
    run = load_run(args.run, device=args.device)
    if args.missing is not None:
        run.config["missing"] = args.missing
    if run.config.get("stream"):
        x, mask = open_rows(args.data or run.config["data"]), None
        check_event_shape(x.row_shape, run.config)
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


def _write_table(args, frame, what: str) -> int:
    """Write ``frame`` to ``--out`` (CSV) and say so in one line: ``wrote WHAT to OUT``."""
    _write_csv(frame, args.out, args.overwrite)
    print(f"wrote {what} to {args.out}")
    return 0


def cmd_regimes(args) -> int:
    run = load_run(args.run)
    if run.model.latent_kind not in ("categorical", "markov") or not run.model.exact_posterior:
        raise ValueError(f"model {run.config['model']!r} has no regimes (use a gmm or hmm run)")
    x, mask, index = run_data(run.config, args.data, with_index=True)
    rows = x.shape[0] * (x.shape[1] if x.ndim == 3 else 1)  # a row per time step for an HMM
    frame = regime_table(run.model, x, mask, index=index if index is not None and len(index) == rows else None)
    return _write_table(args, frame, f"{len(frame)} rows of regimes")


def cmd_anomaly(args) -> int:
    run = load_run(args.run)
    frame, scores = score_run(run, args.data, args.iwae_samples, args.seed)
    return _write_table(args, frame, f"{len(frame)} anomaly scores ({scores.description}, nats per row; "
                                     "percentiles against the training data)")


def cmd_encode(args) -> int:
    run = load_run(args.run)
    frame, found = encode_run(run, args.data, args.samples, args.seed)
    return _write_table(args, frame, f"the posterior means and sds of z ({found.mean.shape[1]} dims, "
                                     f"{found.method}) of {len(frame)} rows")


def cmd_forecast(args) -> int:
    run = load_run(args.run)
    if args.missing is not None:
        run.config["missing"] = args.missing
    frame, found = forecast_run(run, args.data, args.horizon, args.samples, args.seed, args.particles)
    what = f"the last {args.horizon} steps of each window" if args.horizon else "the missing entries"
    return _write_table(args, frame, f"the predictive mean, sd and quantiles of {what} ({len(frame)} entries, "
                                     f"{found.method}, {args.samples} draws)")


def _keyword_arrays(path: str) -> dict:
    """The arrays of an .npz file as keyword arguments of a user's model (floats in torch's default dtype)."""
    if not str(path).endswith(".npz"):
        raise ValueError("a model from a Python file takes its arguments from an .npz file (one array per keyword)")
    with np.load(path, allow_pickle=False) as arrays:
        values = {k: torch.as_tensor(arrays[k]) for k in arrays.files}
    return {k: v.to(torch.get_default_dtype()) if v.is_floating_point() else v for k, v in values.items()}


def cmd_compare(args) -> int:
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
    MODELS.lookup(args.model)
    table = read_data(args.data, window=args.window)
    x, _ = model_data(args.model, table.x, None)
    elbos = [e.strip() for e in args.elbos.split(",") if e.strip()] if args.elbos else None
    unknown = [e for e in elbos or [] if e.split(":")[0] not in ELBO_NAMES]
    if unknown or (args.elbos is not None and not elbos):
        raise ValueError(f"unknown estimator {unknown[0] if unknown else args.elbos!r} in --elbos; "
                         f"choose from: {', '.join(ELBO_NAMES)}")
    options = dict(MODELS[args.model].example_options)
    options.update(model_options(args, args.model))
    with staged_run(Path(args.out), overwrite=args.overwrite, protect=_input_paths(args.data)) as stage:
        compare(args.model, x, elbos, stage, options=options, steps=args.steps, num_draws=args.draws,
                seed=args.seed)
    print(f"wrote the estimator comparison to {args.out}")
    return 0


def cmd_diagnose(args) -> int:
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
    run = load_run(args.run, device=args.device)
    if not run.model.can_sample:
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
    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()]
    real, synthetic = load_npz_sequences(args.real), load_npz_sequences(args.synthetic)
    if "discriminative" in metrics and len(real) != len(synthetic):
        size = balanced_size(len(real), len(synthetic))
        larger = "real" if len(real) > len(synthetic) else "synthetic"
        note(f"the discriminative score uses {size} of the {max(len(real), len(synthetic))} {larger} windows "
             "in each repeat (as many real as synthetic)")
    scores = timegan_scores(real, synthetic, metrics,
                            repeats=args.repeats, seed=args.seed, device=args.device,
                            discriminative_steps=args.discriminative_steps, predictive_steps=args.predictive_steps)
    print(json.dumps(scores, indent=2 if args.pretty else None))
    return 0


def cmd_run(args) -> int:
    names = list(EXPERIMENTS) if args.name == "all" else [args.name]
    for name in names:
        if name not in EXPERIMENTS:
            raise ValueError(f"unknown experiment {name!r}; choose one of: all, {', '.join(EXPERIMENTS)}")
    out = Path(args.out or f"runs/{args.name}")
    report = run_experiments(
        names, out, quick=args.quick, seed=args.seed, device=str(args.device),
        progress=not args.quiet, overwrite=args.overwrite,
    )
    if not args.quiet:
        print(f"report: {report}")
    return 0
