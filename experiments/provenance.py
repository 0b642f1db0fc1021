"""What a run was made from, and run files read as untrusted input.

* :func:`data_record`: the data file as an absolute path, its size and its sha256, or the name of
  a shipped data set; stored in ``config.json`` so a run can be checked against its data later.
* :func:`resume_difference`: the first setting (or the data) in which a ``--resume`` differs
  from the interrupted run, as one line.
* :func:`check_config`: a hand-edited ``config.json`` validated field by field (types and
  ranges), each problem one line naming the field.
"""
from __future__ import annotations

import hashlib
import math
from pathlib import Path

from dlvm.models import MODELS

from .checks import flag_name

HASH_CHUNK = 1 << 20
#: config keys whose change does not change the fitted parameters (records, not settings)
NOT_SETTINGS = {"data", "data_file", "dtypes", "epochs", "iwae_samples", "checkpoint_every", "lr_changes"}
#: settings a ``--resume`` may change when the matching ``--allow-new-...`` flag is given
MAY_CHANGE = {"lr": "--allow-new-lr"}
DTYPE_NAMES = ("float32", "float64")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(HASH_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def data_record(source) -> dict:
    """``{"path", "size", "sha256"}`` of a data file, or ``{"name"}`` of a shipped data set."""
    path = Path(str(source))
    if not path.is_file():
        return {"name": str(source)}
    path = path.resolve()
    return {"path": str(path), "size": path.stat().st_size, "sha256": file_sha256(path)}


def data_location(source) -> str:
    """The data argument as stored in config.json: a file's absolute path, else the name."""
    path = Path(str(source))
    return str(path.resolve()) if path.is_file() else str(source)


def _describe(value) -> str:
    return "unset" if value is None else str(value)


def _option_difference(group: str, old: dict, new: dict) -> str | None:
    for key in sorted(set(old) | set(new)):
        if old.get(key) != new.get(key):
            name = key.removeprefix("guide_") if group == "guide_options" else key
            return f"{flag_name(name)} {_describe(old.get(key))}, not {_describe(new.get(key))}"
    return None


def _data_difference(old: dict, new: dict) -> str | None:
    before, now = old.get("data_file") or {}, new.get("data_file") or {}
    if before.get("sha256") and before.get("sha256") != now.get("sha256"):
        where = now.get("path") or now.get("name")
        return f"other data ({where} differs from {before.get('path')}: sha256 {before['sha256'][:12]}...)"
    if before.get("name") and before.get("name") != now.get("name"):
        return f"--data {before['name']}, not {now.get('name') or now.get('path')}"
    return None


def resume_difference(old: dict, new: dict, allowed=()) -> str | None:
    """How the settings of ``new`` differ from the interrupted run's ``old`` config (one phrase,
    e.g. ``--lr 0.01, not 0.02``), or None. Keys of ``allowed`` may differ."""
    data = _data_difference(old, new)
    if data:
        return data
    for key in sorted(set(old) | set(new)):
        if key in NOT_SETTINGS or key in allowed or old.get(key) == new.get(key):
            continue
        if key in ("model_options", "guide_options"):
            difference = _option_difference(key, old.get(key) or {}, new.get(key) or {})
            if difference:
                return difference
            continue
        hint = f" (pass {MAY_CHANGE[key]} to continue with the new one)" if key in MAY_CHANGE else ""
        return f"{flag_name(key)} {_describe(old.get(key))}, not {_describe(new.get(key))}{hint}"
    return None


# ----------------------------------------------------------------------------- config.json
def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return (_is_int(value) or isinstance(value, float)) and math.isfinite(value)


def _counts(low: int):
    return lambda v: _is_int(v) and v >= low, f"an integer of at least {low}"


POSITIVE = (lambda v: _is_number(v) and v > 0, "a finite number above 0")
TEXT = (lambda v: isinstance(v, str), "text")
FLAG = (lambda v: isinstance(v, bool), "true or false")
SIZES = (lambda v: isinstance(v, list) and len(v) > 0 and all(_is_int(s) and s >= 1 for s in v),
         "a list of positive integers")
TEXTS = (lambda v: isinstance(v, list) and all(isinstance(s, str) for s in v), "a list of texts")

#: the type and range of every option a config.json may hold
OPTION_RULES = {
    "latent_dim": _counts(1), "components": _counts(1), "states": _counts(1), "restarts": _counts(1),
    "trend_poly": _counts(0), "ar_order": _counts(0), "prior_components": _counts(0), "noise_scale": POSITIVE,
    "recon_weight": POSITIVE,
    "covariance": TEXT, "likelihood": TEXT, "cell": TEXT, "noise": TEXT, "encoder": TEXT, "baseline": TEXT,
    "guide_covariance": TEXT, "feed_latent": FLAG, "bayesian": FLAG, "residual": FLAG, "local_level": FLAG,
    "mask_input": FLAG,
    "hidden": SIZES, "seasonality": TEXTS,
}
TOP_RULES = {
    "event_shape": SIZES, "window": _counts(1), "stride": _counts(1), "columns": TEXTS, "stream": FLAG,
    "data": TEXT, "missing": (lambda v: v in ("error", "mask"), "'error' or 'mask'"),
}


def _check_field(where: str, key: str, value, rule) -> None:
    test, wanted = rule
    if not test(value):
        raise ValueError(f"{where}: {key!r} must be {wanted}, not {value!r}")


def check_config(config, where) -> dict:
    """``config`` (parsed config.json) checked as untrusted input; a one-line error naming the
    first bad field."""
    if not isinstance(config, dict):
        raise ValueError(f"{where} does not hold a JSON object")
    missing = {"model", "guide", "event_shape", "model_options", "guide_options", "dtype"} - set(config)
    if missing:
        raise ValueError(f"{where} lacks {', '.join(sorted(missing))}")
    if config["model"] not in MODELS:
        raise ValueError(f"{where}: unknown model {config['model']!r}; choose one of: {', '.join(MODELS)}")
    if config["guide"] not in MODELS[config["model"]].guides:
        raise ValueError(f"{where}: guide {config['guide']!r} does not pair with {config['model']}")
    if config["dtype"] not in DTYPE_NAMES:
        raise ValueError(f"{where}: 'dtype' must be one of {', '.join(DTYPE_NAMES)}, not {config['dtype']!r}")
    for key, rule in TOP_RULES.items():
        if config.get(key) is not None:
            _check_field(where, key, config[key], rule)
    for group in ("model_options", "guide_options"):
        if not isinstance(config[group], dict):
            raise ValueError(f"{where}: {group!r} must be a JSON object, not {config[group]!r}")
        for key, value in config[group].items():
            if key not in OPTION_RULES:
                raise ValueError(f"{where}: unknown {group[:-1].replace('_', ' ')} {key!r}")
            _check_field(where, key, value, OPTION_RULES[key])
    return config
