"""The ``dlvm`` command line: parsing and dispatch.

The subcommands are the entries of :data:`COMMANDS` (name, help, the function that runs it, the
arguments it takes); a model's flags are generated from the options every registered model
declares (:mod:`.flags`). ``--device`` is resolved once, here, before a command runs.

Every failure the user can cause ends in one line on stderr (``dlvm: error: ...``) and exit
status 2; ``--debug`` shows the traceback instead.
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass

import torch

from ...guides import ENCODERS
from ...inference import ELBO_NAMES, OPTIMIZERS, CheckpointError, NonFiniteLossError
from ...inference.data import resolve_device
from ...inference.em import DEFAULT_MAX_ITER, DEFAULT_TOL
from ...models import DTYPES, __version__
from ...models.registry import Registry
from .checks import OneLineParser, check_arguments
from .commands import (
    cmd_anomaly, cmd_compare, cmd_diagnose, cmd_encode, cmd_evaluate, cmd_fit, cmd_forecast, cmd_list, cmd_regimes,
    cmd_run, cmd_sample, cmd_score,
)
from .flags import add_model_flags

EXIT_USER_ERROR = 2
EXIT_INTERNAL = 70
EXIT_INTERRUPTED = 130


@dataclass(frozen=True)
class Command:
    """A subcommand: ``run(args) -> exit status`` and ``arguments(parser)``, which adds its flags."""

    name: str
    help: str
    run: Callable[[argparse.Namespace], int]
    arguments: Callable[[argparse.ArgumentParser], None]


def _device(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", help="auto (CUDA where there is one), cpu, cuda or cuda:N")


def _seed(p: argparse.ArgumentParser, help_text: str | None = None) -> None:
    p.add_argument("--seed", type=int, default=0, help=help_text)


def _overwrite(p: argparse.ArgumentParser) -> None:
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")


def _run_input(p: argparse.ArgumentParser, what: str = "file or data set (default: the run's data)") -> None:
    p.add_argument("run", help="run folder written by dlvm fit")
    p.add_argument("--data", help=what)


def _list_arguments(p):
    pass


def _fit_arguments(p):
    p.add_argument("model", help="model name (see dlvm list)")
    p.add_argument("--data", required=True, help="CSV/.npy/.npz file, or a data set name")
    p.add_argument("--out", required=True, help="run folder to write")
    add_model_flags(p)
    p.add_argument("--window", type=int, help="cut a table of time steps into windows of this many steps")
    p.add_argument("--stride", type=int, help="steps between window starts (default: the window)")
    p.add_argument("--baseline", default="neural", choices=("neural", "decaying", "none"),
                   help="score-function baseline of discrete amortized guides (tracegraph)")
    p.add_argument("--guide", help="guide name (default: the model's first)")
    p.add_argument("--encoder", help=f"encoder of amortized guides ({', '.join(ENCODERS)}); default: the model's")
    p.add_argument("--guide-covariance", default="diagonal", choices=("diagonal", "full"))
    p.add_argument("--elbo", help=f"estimator ({', '.join(ELBO_NAMES)}); default: the guide's")
    p.add_argument("--optimizer", choices=OPTIMIZERS,
                   help="default: em for the models with a closed-form EM step and their exact guide, else adam")
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
    _device(p)
    _seed(p)
    p.add_argument("--checkpoint-every", type=float, default=10.0, metavar="SECONDS",
                   help="write checkpoint.pt at the end of an epoch this often (and after the last)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted fit into --out")
    p.add_argument("--allow-new-lr", action="store_true",
                   help="with --resume: continue with a learning rate other than the interrupted run's")
    _overwrite(p)
    p.add_argument("--stream", action="store_true",
                   help="read the rows of a .npy/.csv file from disk per minibatch (data larger than memory)")
    p.add_argument("--distributed", action="store_true",
                   help="data parallel over the processes started by torchrun (rank 0 writes --out)")
    p.add_argument("--quiet", action="store_true")


def _evaluate_arguments(p):
    _run_input(p)
    p.add_argument("--iwae-samples", type=int, default=100)
    p.add_argument("--missing", choices=("error", "mask"), help="default: as the run was fitted")
    _device(p)


def _sample_arguments(p):
    p.add_argument("run", help="run folder written by dlvm fit")
    p.add_argument("-n", type=int, required=True)
    p.add_argument("--out", required=True, help=".npz (key 'data'), .npy or .csv")
    p.add_argument("--mean", action="store_true",
                   help="decoder means E[x | z] instead of draws from the full predictive p(x | z)")
    _seed(p)
    _device(p)
    _overwrite(p)


def _table_per_row(p, verb: str = "read", seed_help: str | None = None) -> None:
    """A run, the data it reads (``--data``), the CSV it writes per row (``--out``), ``--overwrite``."""
    _run_input(p, f"file or data set to {verb} (default: the run's data)")
    p.add_argument("--out", required=True, help="CSV file to write")
    if seed_help:
        _seed(p, seed_help)
    _overwrite(p)


def _regimes_arguments(p):
    _table_per_row(p)


def _anomaly_arguments(p):
    p.add_argument("--iwae-samples", type=int, default=100, help="K of IWAE-K where no exact likelihood exists")
    _table_per_row(p, "score", "random state of the importance draws")


def _encode_arguments(p):
    p.add_argument("--samples", type=int, default=100, help="draws of the guide where it has no closed-form moments")
    _table_per_row(p, "encode", "random state of the guide's draws")


def _forecast_arguments(p):
    p.add_argument("--horizon", type=int, help="steps to forecast at the end of each window (else impute "
                                               "the data's missing entries)")
    p.add_argument("--samples", type=int, default=200, help="predictive draws per entry")
    p.add_argument("--particles", type=int, default=256, help="importance particles of z per row (decoder models)")
    p.add_argument("--missing", choices=("error", "mask"), help="default: as the run was fitted")
    _table_per_row(p, "forecast", "random state of the predictive draws")


def _compare_arguments(p):
    p.add_argument("model", help="a registered model, or your own Pyro model as FILE.py:NAME")
    p.add_argument("--data", required=True,
                   help="data file; for FILE.py:NAME an .npz whose arrays are its keyword arguments")
    p.add_argument("--guide", help="for FILE.py:NAME: auto-normal (default), auto-diagonal-normal, "
                                   "auto-multivariate-normal, auto-delta, or FILE.py:NAME")
    p.add_argument("--out", required=True)
    p.add_argument("--elbos", help="comma-separated estimators, e.g. trace,tracegraph,renyi:0.5")
    add_model_flags(p)
    p.add_argument("--window", type=int)
    p.add_argument("--steps", type=int, default=300, help="training steps of each curve")
    p.add_argument("--draws", type=int, default=100, help="gradient draws per estimator")
    _seed(p)
    _overwrite(p)


def _diagnose_arguments(p):
    _run_input(p)
    p.add_argument("--mcmc", action="store_true", help="draw the globals by NUTS (Bayesian models)")
    p.add_argument("--out", help="folder (default: RUN/diagnostics)")
    _seed(p)
    _overwrite(p)


def _score_arguments(p):
    p.add_argument("--real", required=True, help=".npz of real windows (N, T, D), key 'data'")
    p.add_argument("--synthetic", required=True, help=".npz of synthetic windows, e.g. from dlvm sample")
    p.add_argument("--metrics", default="discriminative,predictive,correlational")
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--discriminative-steps", type=int, default=2000, help="training steps of each classifier")
    p.add_argument("--predictive-steps", type=int, default=5000, help="training steps of each predictor")
    p.add_argument("--pretty", action="store_true", help="indented JSON instead of one line")
    _seed(p)
    _device(p)


def _run_arguments(p):
    p.add_argument("name", help="experiment name or 'all'")
    p.add_argument("--out")
    p.add_argument("--quick", action="store_true", help="small, fast settings")
    _seed(p)
    _device(p)
    _overwrite(p)
    p.add_argument("--quiet", action="store_true")


#: the subcommands, in the order ``dlvm --help`` lists them
COMMANDS: Registry = Registry.of("command", (
    Command("list", "models, guides, ELBOs, experiments and data sets", cmd_list, _list_arguments),
    Command("fit", "fit a model to a data file and write a run folder", cmd_fit, _fit_arguments),
    Command("evaluate", "ELBO, IWAE-K and exact log-likelihood of a run on data", cmd_evaluate, _evaluate_arguments),
    Command("sample", "draw from a fitted model", cmd_sample, _sample_arguments),
    Command("regimes", "most probable regime and regime probabilities per row (gmm, hmm)", cmd_regimes,
            _regimes_arguments),
    Command("anomaly", "anomaly scores per row: negative log-likelihood (exact or IWAE-K), its standard error, "
            "percentile against the training data", cmd_anomaly, _anomaly_arguments),
    Command("encode", "posterior means and sds of the latent z per row", cmd_encode, _encode_arguments),
    Command("forecast", "forecast the last steps of each window, or impute missing entries, from the model's "
            "predictive distribution", cmd_forecast, _forecast_arguments),
    Command("compare", "compare ELBOs and gradient estimators on a model", cmd_compare, _compare_arguments),
    Command("diagnose", "ArviZ summary, LOO, PSIS k-hat and predictive checks of a run", cmd_diagnose,
            _diagnose_arguments),
    Command("score", "discriminative and predictive scores (TimeGAN) and correlational score (Diffusion-TS) of "
            "synthetic vs real windows, as one JSON line", cmd_score, _score_arguments),
    Command("run", "run an experiment (or all) and write its report", cmd_run, _run_arguments),
))


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="dlvm", description="Deep latent variable models on Pyro.")
    parser.add_argument("--version", action="version", version=f"dlvm {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS.values():
        p = sub.add_parser(command.name, help=command.help)
        command.arguments(p)
        p.set_defaults(func=command.run)
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
        if hasattr(args, "device"):
            args.device = resolve_device(args.device)
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
