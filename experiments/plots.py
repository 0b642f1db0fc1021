"""Shared plotting helpers: one style for every experiment's figures, and saving them.

Figures are written as PNG under ``out/figures/`` with the Agg backend (no display needed).
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

#: one colour per method, so a method looks the same in every figure
COLORS = {
    "PPCA": "tab:blue",
    "FA": "tab:red",
    "sample covariance": "tab:gray",
    "Ledoit-Wolf": "tab:green",
    "truth": "black",
}

STYLE = {
    "figure.dpi": 100,
    "savefig.dpi": 150,
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "legend.frameon": False,
    "lines.linewidth": 1.8,
    "lines.markersize": 4,
}


def figure(ncols: int = 1, nrows: int = 1, width: float = 5.0, height: float = 3.6, **kwargs):
    """A new figure in the dlvm style with ``nrows`` x ``ncols`` axes of ``width`` x ``height`` inches."""
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), **kwargs)
    return fig, axes


def color(name: str) -> str | None:
    """The colour of method ``name`` (None lets matplotlib choose for names without one)."""
    return COLORS.get(name)


def save_figure(fig, out: str | Path, name: str) -> str:
    """Save ``fig`` as ``out/figures/<name>.png`` (creating the folder), close it, and return
    the path relative to ``out`` (for an experiment's list of files)."""
    folder = Path(out) / "figures"
    folder.mkdir(parents=True, exist_ok=True)
    relative = Path("figures") / f"{name}.png"
    with plt.rc_context(STYLE):
        fig.tight_layout()
        fig.savefig(Path(out) / relative)
    plt.close(fig)
    return relative.as_posix()
