"""Training and evaluation machinery: the SVI engine, ELBOs by name, evaluation, checkpoints."""
from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .data import as_observations, resolve_device
from .elbos import ELBO_NAMES, make_elbo
from .engine import FitResult, NonFiniteLossError, fit
from .estimators import compare_estimators, training_curves
from .hooks import Hook
from .objective import Objective
from .optim import OPTIMIZERS, StepSchedule
from .diagnostics import to_arviz
from .evaluate import Bounds, Evaluation, evaluate, evaluate_model, log_weights
from .streaming import CsvRows, NpyRows, RowSource, open_rows

__all__ = [
    "CheckpointError", "CsvRows", "NpyRows", "RowSource", "open_rows", "ELBO_NAMES", "Bounds", "Evaluation", "evaluate_model", "FitResult", "Hook", "Objective", "NonFiniteLossError", "OPTIMIZERS",
    "StepSchedule",
    "as_observations", "compare_estimators", "training_curves", "evaluate", "fit", "load_checkpoint", "log_weights", "make_elbo",
    "resolve_device", "save_checkpoint", "to_arviz",
]
