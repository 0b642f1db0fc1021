"""Turning user arrays into observation tensors, with one-line errors for bad values."""
from __future__ import annotations

import numpy as np
import torch


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` picks CUDA when it exists; ``cpu``, ``cuda`` and ``cuda:N`` are taken as given."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError:
        raise ValueError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N") from None
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r} asked for, but CUDA is not available here")
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise ValueError(f"device {device!r} does not exist ({torch.cuda.device_count()} GPUs)")
    elif resolved.type != "cpu":
        raise ValueError(f"unsupported device {device!r}; use auto, cpu, cuda or cuda:N")
    return resolved


def as_observations(x, mask=None, *, dtype=torch.float32, device="cpu"):
    """Validate data and return ``(x, mask)`` as tensors on ``device``.

    ``x`` is array-like (N, ...). NaN marks a missing entry: it is an error unless ``mask`` is
    given (boolean, x's shape, True = observed) and False there. Missing entries are replaced by
    0 before any model sees them, because a NaN that is masked out still poisons gradients.
    A mask that observes everything is returned as None (the two fits are identical).
    """
    if not torch.is_tensor(x):
        x = np.asarray(x)
        if not x.flags.writeable:  # e.g. a pandas view: torch warns on read-only memory
            x = x.copy()
    x = torch.as_tensor(x)
    if not (x.is_floating_point() or x.dtype in (torch.int32, torch.int64, torch.uint8, torch.bool)):
        raise ValueError(f"data must be numeric, got {x.dtype}")
    x = x.to(device=device, dtype=dtype)
    if x.ndim < 2:
        raise ValueError(f"data must have one row per observation (2 or more dimensions), got shape {tuple(x.shape)}")
    if x.shape[0] < 1 or x[0].numel() < 1:
        raise ValueError(f"data is empty (shape {tuple(x.shape)})")
    if torch.isinf(x).any():
        raise ValueError(f"data has {int(torch.isinf(x).sum())} infinite values")
    missing = torch.isnan(x)
    if mask is None:
        if missing.any():
            raise ValueError(
                f"data has {int(missing.sum())} missing (NaN) values; "
                "treat them as missing with a mask (--missing mask)"
            )
        return x, None
    mask = torch.as_tensor(mask, device=device).to(torch.bool)
    if mask.shape != x.shape:
        raise ValueError(f"mask shape {tuple(mask.shape)} differs from data shape {tuple(x.shape)}")
    if (missing & mask).any():
        raise ValueError("data has NaN values at entries the mask marks as observed")
    if mask.all():
        return x, None
    if (~mask).flatten(1).all(-1).any():
        raise ValueError("some rows have no observed entry at all; drop them first")
    return torch.where(mask, x, 0.0), mask


def validation_split(x, mask=None, fraction: float = 0.1, seed: int = 0):
    """Hold out a random ``fraction`` of the rows (dim 0) of ``x`` (and ``mask``) for validation.

    Returns (x_train, mask_train, x_val, mask_val); masks are None without ``mask``. At least one
    row goes to each side: a one-line ValueError for fewer than 2 rows or a fraction outside (0, 1).
    """
    if not 0 < fraction < 1:
        raise ValueError(f"the validation fraction must lie strictly between 0 and 1, got {fraction}")
    n = len(x)
    if n < 2:
        raise ValueError(f"a validation split needs at least 2 rows, got {n}")
    held = min(max(int(round(fraction * n)), 1), n - 1)
    order = np.random.default_rng(seed).permutation(n)
    val, train = np.sort(order[:held]), np.sort(order[held:])
    pick = (lambda a, rows: None if a is None else a[rows])
    return pick(x, train), pick(mask, train), pick(x, val), pick(mask, val)
