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
