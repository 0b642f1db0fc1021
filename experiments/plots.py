"""Plotting helpers shared by the experiments (matplotlib, Agg backend)."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

REGIME_COLOURS = ("#f6c38b", "#7fa7d9", "#c44e52", "#55a868", "#8172b2")


def regime_figure(dates, returns, labels, path: Path, title: str, names=None, probability=None) -> Path:
    """Returns as points over time with the most probable regime shaded behind them (the style
    of Figure 6.5); with ``probability`` (T,) a lower panel shows p(high-volatility regime | x)."""
    labels = np.asarray(labels)
    k = int(labels.max()) + 1 if labels.size else 1
    names = names or [f"regime {i}" for i in range(k)]
    panels = 2 if probability is not None else 1
    fig, axes = plt.subplots(panels, 1, figsize=(11, 4 + 1.5 * (panels - 1)), sharex=True,
                             gridspec_kw={"height_ratios": [3, 1][:panels]}, squeeze=False)
    ax = axes[0, 0]
    returns = np.asarray(returns)
    low, high = returns.min() * 1.05, returns.max() * 1.05
    for i in range(k):
        ax.fill_between(dates, low, high, where=labels == i, step="mid", color=REGIME_COLOURS[i % 5],
                        alpha=0.6, linewidth=0, label=names[i])
    ax.scatter(dates, returns, s=1.5, color="black", zorder=3)
    ax.set_ylim(low, high)
    ax.set_ylabel("daily log return (%)")
    ax.set_title(title)
    ax.legend(loc="lower left", fontsize=8, ncol=k)
    if probability is not None:
        axes[1, 0].plot(dates, probability, color=REGIME_COLOURS[1], linewidth=0.6)
        axes[1, 0].set_ylabel(f"p({names[-1]})")
        axes[1, 0].set_ylim(-0.02, 1.02)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def save_figure(fig, path: Path) -> Path:
    """Lay out, write (creating the folder) and close a figure."""
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def grouped_bars(values: dict, path: Path, ylabel: str, title: str, log: bool = False) -> Path:
    """One panel per key of ``values`` ({panel: {bar label: value}}), bars on a log scale if asked."""
    panels = list(values)
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 4), squeeze=False)
    for ax, panel in zip(axes[0], panels):
        labels = list(values[panel])
        heights = [values[panel][k] for k in labels]
        ax.bar(range(len(labels)), heights, color="#7fa7d9")
        ax.set_xticks(range(len(labels)), labels, rotation=60, ha="right", fontsize=7)
        if log:
            ax.set_yscale("log")
        ax.set_title(f"{title}: {panel}", fontsize=9)
        ax.set_ylabel(ylabel)
    return save_figure(fig, path)


def curves(frames: dict, path: Path, x: str, ys: tuple[str, ...], title: str) -> Path:
    """One panel per key of ``frames`` ({panel: {line label: DataFrame}}): columns ``ys`` against ``x``."""
    panels = list(frames)
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 4), squeeze=False)
    for ax, panel in zip(axes[0], panels):
        for i, (label, frame) in enumerate(frames[panel].items()):
            colour = REGIME_COLOURS[i % len(REGIME_COLOURS)]
            for y, style in zip(ys, ("-", "--", ":")):
                if frame[y].notna().any():
                    ax.plot(frame[x], frame[y], style, color=colour, label=f"{label} {y}")
        ax.set_xlabel(x)
        ax.set_ylabel("nats per row")
        ax.set_title(f"{title}: {panel}", fontsize=9)
        ax.legend(fontsize=6)
    return save_figure(fig, path)
