"""Run folders: ``config.json``, ``checkpoint.pt``, ``history.csv``, ``metrics.json``, ``figures/``.

A run is written into ``DIR.partial`` and renamed to ``DIR`` only when it is complete, so a
failed or interrupted command never leaves something that looks like a finished run; the staging
folder keeps the last good checkpoint for ``--resume``. A run folder alone is enough to rebuild
the trained model and guide (:func:`load_run`).
"""
from __future__ import annotations

import fcntl
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

from ...guides import pair
from ...inference.checkpoint import CheckpointError, load_checkpoint, load_state, save_checkpoint
from ...inference.engine import CHECKPOINT_NAME, guide_latents
from ...models import DTYPES, MODELS, build_model

from ..data import read_data
from .provenance import check_config


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, payload: dict) -> None:
    write_text_atomic(path, json.dumps(payload, indent=2, sort_keys=True) + "\n")


#: the file dlvm writes into every folder it creates; only a folder holding it is ever replaced
RUN_MARKER = ".dlvm-run"


def staging_dir(out: Path) -> Path:
    return out.with_name(out.name + ".partial")


def _is_within(path: Path, folder: Path) -> bool:
    """Whether ``path`` is ``folder`` or lies below it (both resolved)."""
    return path == folder or folder in path.parents


def check_output(out: Path, overwrite: bool, protect=()) -> None:
    """Refuse an output folder that dlvm may not write or replace.

    An existing folder is replaced only with ``overwrite``, and only when it is empty or holds
    :data:`RUN_MARKER` (dlvm wrote it). Never replaced: a file, the working directory or a folder
    above it, a folder holding any path of ``protect`` (the input data).
    """
    out = Path(out)
    if not out.name or out.name in (".", ".."):
        raise ValueError(f"--out {str(out)!r} names no folder of its own; give a new folder name")
    if out.exists() and not out.is_dir():
        raise ValueError(f"output {out} exists and is not a folder")
    resolved = out.resolve()
    if _is_within(Path.cwd().resolve(), resolved):
        raise ValueError(f"output {out} is the working directory or holds it; choose a new folder")
    for path in protect:
        if path is not None and _is_within(Path(path).resolve(), resolved):
            raise ValueError(f"output {out} holds the input {path}; choose another folder")
    if out.is_dir() and any(out.iterdir()):
        if not (out / RUN_MARKER).is_file():
            raise ValueError(f"{out} exists and was not written by dlvm; it is never replaced: choose another --out")
        if not overwrite:
            raise ValueError(f"output folder {out} already holds a run; pass --overwrite to replace it")
    parent = resolved.parent
    if parent.exists() and not os.access(parent, os.W_OK):
        raise ValueError(f"cannot write to {parent} (permission denied)")


@contextmanager
def output_lock(out: Path):
    """Hold an exclusive lock on ``out`` (the file ``.OUT.lock`` beside it) for the block.

    A second dlvm process on the same output fails at once with one line instead of racing the
    first one for the folder.
    """
    lock = out.with_name(f".{out.name}.lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    handle = open(lock, "a+")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ValueError(f"another dlvm process is writing {out}; wait for it or choose another --out") from None
        if not lock.exists() or os.stat(lock).st_ino != os.fstat(handle.fileno()).st_ino:
            raise ValueError(f"another dlvm process has just written {out}; run again to replace it")
        try:
            yield
        finally:
            lock.unlink(missing_ok=True)
    finally:
        handle.close()


def new_dlvm_folder(path: Path) -> Path:
    """Create ``path`` (and parents) with :data:`RUN_MARKER` in it; return it."""
    path.mkdir(parents=True, exist_ok=True)
    (path / RUN_MARKER).write_text("written by dlvm; `--overwrite` may replace this folder\n")
    return path


def replace_folder(source: Path, out: Path) -> None:
    """Move the finished folder ``source`` to ``out``; an old run at ``out`` is removed only once
    the new one is in place."""
    old = None
    if out.exists():
        if any(out.iterdir()) and not (out / RUN_MARKER).is_file():
            raise ValueError(f"{out} was changed by another program while dlvm wrote; it is left as it is")
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, old)
    os.replace(source, out)
    if old is not None:
        shutil.rmtree(old)


@contextmanager
def staged_run(out: Path, *, overwrite: bool = False, resume: bool = False, protect=()):
    """Yield the staging folder for a run that will become ``out`` when the block succeeds.

    ``out`` is checked (:func:`check_output`: only dlvm's own folders are replaced, never the
    data in ``protect``) and locked for the whole block. Without ``resume`` a stale staging folder
    is cleared first. If the block fails, a staging folder holding a checkpoint is kept (for
    ``--resume``); an empty one is removed.
    """
    out = Path(out)
    check_output(out, overwrite, protect)
    with output_lock(out):
        check_output(out, overwrite, protect)
        stage = staging_dir(out)
        if stage.exists() and not resume:
            if any(stage.iterdir()) and not (stage / RUN_MARKER).is_file():
                raise ValueError(f"{stage} exists and was not written by dlvm; move it away first")
            shutil.rmtree(stage)
        new_dlvm_folder(stage)
        try:
            yield stage
        except BaseException:
            if not (stage / CHECKPOINT_NAME).exists():
                shutil.rmtree(stage, ignore_errors=True)
            raise
        replace_folder(stage, out)


@dataclass
class Run:
    """A finished run folder, rebuilt: its config, the model, the module trained and the guide."""

    path: Path
    config: dict
    model: torch.nn.Module
    trained: torch.nn.Module
    guide: torch.nn.Module


def build_pair(config: dict):
    """(model, model_to_train, guide) from a run's config, in its dtype, untrained."""
    dtype = DTYPES[config["dtype"]]
    model = build_model(config["model"], tuple(config["event_shape"]), config["model_options"]).to(dtype)
    trained, guide = pair(model, config["guide"], tuple(config["event_shape"]), **config["guide_options"])
    guide.to(dtype)
    return model, trained, guide


def read_config(path: Path) -> dict:
    """The config.json of a run folder, checked as untrusted input (:func:`check_config`)."""
    config_path = Path(path) / "config.json"
    if not Path(path).is_dir():
        raise ValueError(f"run folder {path} does not exist")
    if not config_path.is_file():
        raise ValueError(f"{path} is not a dlvm run folder (no config.json)")
    try:
        config = json.loads(config_path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{config_path} is not valid JSON ({err.msg})") from None
    except UnicodeDecodeError:
        raise ValueError(f"{config_path} is not a text file") from None
    return check_config(config, config_path)


def _rebuild(config: dict, path: Path):
    """:func:`build_pair`, with a one-line error naming config.json when its options do not
    describe a model dlvm can build."""
    try:
        return build_pair(config)
    except (ValueError, TypeError, KeyError, RuntimeError) as err:
        detail = str(err).strip().splitlines()[0][:160] if str(err).strip() else type(err).__name__
        raise ValueError(f"{path / 'config.json'} describes no model dlvm can build ({detail})") from None


def non_finite_tensor(state: dict) -> str | None:
    """The name of the first floating tensor of a state dict holding NaN or inf, or None."""
    for name, value in state.items():
        if torch.is_tensor(value) and value.is_floating_point() and not torch.isfinite(value).all():
            return name
    return None


def _checked_state(state: dict, checkpoint: Path, config: dict) -> dict:
    written_for = state.get("config", {}).get("model") if isinstance(state.get("config"), dict) else None
    if written_for is not None and written_for != config["model"]:
        raise CheckpointError(f"{checkpoint} was written for model {written_for!r}, not {config['model']!r}")
    if not isinstance(state.get("model"), dict) or not isinstance(state.get("guide"), dict):
        raise CheckpointError(f"{checkpoint} holds no model and guide state")
    for what in ("model", "guide"):
        bad = non_finite_tensor(state[what])
        if bad is not None:
            raise CheckpointError(f"{checkpoint} holds non-finite (NaN or inf) values in the {what}'s {bad}; "
                                  "fit the model again")
    return state


def load_run(path: str | Path, device: str | torch.device = "cpu") -> Run:
    """Rebuild the model and guide of a run folder from its config and checkpoint; a checkpoint
    with NaN or infinite weights is refused."""
    path = Path(path)
    config = read_config(path)
    model, trained, guide = _rebuild(config, path)
    state = _checked_state(load_checkpoint(path / CHECKPOINT_NAME), path / CHECKPOINT_NAME, config)
    # guides on globals (AutoNormal) build their parameters on first use: run them once
    guide_latents(guide, torch.zeros(2, *config["event_shape"], dtype=DTYPES[config["dtype"]]))
    load_state(trained, state["model"], "model")
    load_state(guide, state["guide"], "guide")
    trained.to(device)
    guide.to(device)
    return Run(path=path, config=config, model=model, trained=trained, guide=guide)


def set_learning_rate(checkpoint: Path, lr: float, lr_decay: float = 1.0) -> int:
    """Make the optimizer in ``checkpoint`` continue at the learning rate ``lr``, decayed by
    ``lr_decay`` for each epoch so far (as a fit started with ``lr`` would be); returns those epochs."""
    state = load_checkpoint(checkpoint)
    epochs = int(state.get("epoch", 0))
    for group in (state.get("optimizer") or {}).get("param_groups", []):
        group["lr"] = lr * lr_decay ** epochs
    save_checkpoint(checkpoint, state)
    return epochs


def is_time_series(model_name: str, window) -> bool:
    """Whether the rows are time steps in order: a model that reads the table as one series
    (HMM), or a table cut into windows."""
    return MODELS[model_name].prepare is not None or window is not None


def model_data(model_name: str, x, mask=None):
    """The registered model's view of a loaded table: its ``prepare`` applied (the HMM reads a
    (T, D) table as one series (1, T, D)). Returns (x, mask)."""
    prepare = MODELS[model_name].prepare
    if prepare is None:
        return x, mask
    return prepare(x), None if mask is None else prepare(mask)


def check_event_shape(row_shape: tuple, config: dict) -> None:
    """A one-line error unless data rows of shape ``row_shape`` are what the run's model was built for."""
    expected = tuple(config["event_shape"])
    if tuple(row_shape) != expected:
        raise ValueError(f"data rows have shape {tuple(row_shape)}, the model expects {expected}")


def run_data(config: dict, source=None, min_rows: int = 1, with_index: bool = False):
    """(x, mask) for a run: ``source`` (a file or data-set name; default the data the run was
    fitted on), read as at fit time (missing values, windows, date order), its columns matched to
    the run's by name, and checked against its shape. ``with_index`` adds the table's row index
    (dates) as a third value, or None."""
    source = config.get("data") if source is None else source
    if source is None:
        raise ValueError("the run folder does not name its data: pass --data FILE")
    table = read_data(source, config.get("missing", "error"), min_rows, config.get("window"), config.get("stride"),
                      columns=config.get("columns"), ordered=is_time_series(config["model"], config.get("window")))
    x, mask = model_data(config["model"], table.x, table.mask)
    check_event_shape(x.shape[1:], config)
    return (x, mask, table.index) if with_index else (x, mask)


def apply_fit_defaults(args, spec) -> None:
    """Fill the training flags the user left unset with the model's ``fit_defaults`` (batch size,
    epoch cap, early-stopping patience, gradient clipping, validation share); ``validation``
    becomes 0 (no split) where neither gives one, and for streamed or distributed fits."""
    for key, value in spec.fit_defaults.items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    if getattr(args, "validation", None) is None or args.stream or args.distributed:
        args.validation = 0.0
