"""Shared plotting helpers: one style for every experiment's figures, and saving them.

Figures are written as PNG under ``out/figures/`` with the Agg backend (no display needed).
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

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


def save_figure_at(fig, path: Path) -> Path:
    """Lay out ``fig`` in the dlvm style, write it to ``path`` (creating the folder) and close it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with plt.rc_context(STYLE):
        fig.tight_layout()
        fig.savefig(path)
    plt.close(fig)
    return path


def save_figure(fig, out: str | Path, name: str) -> str:
    """Save ``fig`` as ``out/figures/<name>.png`` and return that path relative to ``out`` (for an
    experiment's list of files)."""
    relative = Path("figures") / f"{name}.png"
    save_figure_at(fig, Path(out) / relative)
    return relative.as_posix()


def scatter_by_label(ax, points, labels, title: str = "", names: dict | None = None, size: float = 8) -> None:
    """2-D scatter of ``points`` (N, 2), one colour per distinct label, with a legend."""
    points, labels = np.asarray(points), np.asarray(labels)
    cmap = plt.get_cmap("tab10")
    for i, label in enumerate(np.unique(labels)):
        chosen = labels == label
        name = names.get(label, label) if names else label
        ax.scatter(points[chosen, 0], points[chosen, 1], s=size, color=cmap(i % 10), label=f"{name}", alpha=0.8)
    ax.legend(fontsize=7, markerscale=1.5, loc="best")
    ax.set_title(title)


def image_mosaic(images, pad: int = 0) -> np.ndarray:
    """Tile images (R, C, H, W) into one (R H, C W) array, row 0 on top; with ``pad`` > 0 the cells
    are separated (and framed) by ``pad`` pixels of NaN, which imshow leaves transparent:
    (R (H + pad) + pad, C (W + pad) + pad)."""
    images = np.asarray(images, dtype=float)
    if pad:
        images = np.pad(images, ((0, 0), (0, 0), (pad, 0), (pad, 0)), constant_values=np.nan)
    rows, cols, height, width = images.shape
    mosaic = images.transpose(0, 2, 1, 3).reshape(rows * height, cols * width)
    return np.pad(mosaic, ((0, pad), (0, pad)), constant_values=np.nan) if pad else mosaic


def training_curves(ax, histories: dict, column: str = "elbo", title: str = "") -> None:
    """Plot ``column`` against epoch for each labelled history DataFrame."""
    for label, history in histories.items():
        ax.plot(history["epoch"], history[column], label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"{column} per row (nats)")
    ax.legend(fontsize=8)
    ax.set_title(title)


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
    return save_figure_at(fig, path)


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
    return save_figure_at(fig, path)


def curves(frames: dict, path: Path, x: str, ys: tuple[str, ...], title: str, unit: str = "nats per row") -> Path:
    """One panel per key of ``frames`` ({panel: {line label: DataFrame}}): columns ``ys`` against
    ``x``; lines that coincide are drawn dashed over each other so that each stays visible."""
    panels = list(frames)
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 4), squeeze=False)
    for ax, panel in zip(axes[0], panels):
        for i, (label, frame) in enumerate(frames[panel].items()):
            colour = REGIME_COLOURS[i % len(REGIME_COLOURS)]
            for y, style in zip(ys, ("-", "--", ":")):
                if frame[y].notna().any():
                    overlap = {} if i == 0 else {"dashes": (2 + 2 * i, 2)}
                    ax.plot(frame[x], frame[y], style, color=colour, label=f"{label} {y}",
                            linewidth=2.5 - 0.6 * (i % 3), **overlap)
        ax.set_xlabel(x)
        ax.set_ylabel(unit)
        ax.set_title(f"{title}: {panel}", fontsize=9)
        ax.legend(fontsize=6)
    return save_figure_at(fig, path)


def real_vs_synthetic(real, synthetic, title: str = "", seed: int = 0, size: int = 1000):
    """PCA and t-SNE of real vs synthetic windows (N, T, D), as in TimeGAN's pictures.

    Up to ``size`` windows of each set are drawn, each reduced to its per-step mean over features
    (a point in R^T); PCA is fitted on the real points. Returns the figure (two panels).
    """
    # imported here: sklearn.manifold takes about a second to load, and only this figure needs it
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    rng = np.random.default_rng(seed)
    pick = [np.asarray(a)[rng.permutation(len(a))[:size]].mean(-1) for a in (real, synthetic)]
    labels = np.r_[np.zeros(len(pick[0]), int), np.ones(len(pick[1]), int)]
    names = {0: "real", 1: "synthetic"}
    pca = PCA(2).fit(pick[0])
    both = np.concatenate(pick)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.5))
    scatter_by_label(axes[0], pca.transform(both), labels, f"PCA {title}", names, size=4)
    tsne = TSNE(2, perplexity=min(40, len(both) - 1), init="pca", random_state=seed).fit_transform(both)
    scatter_by_label(axes[1], tsne, labels, f"t-SNE {title}", names, size=4)
    return fig


def ink_fraction(path: Path, margin: float = 0.15) -> float:
    """Share of the pixels in the middle of a PNG (``margin`` of each side cut away, where titles,
    ticks and labels sit) that carry data: darker than light grey, or coloured. Grid lines and the
    background do not count, so a blank figure or an empty axes gives 0."""
    rgb = plt.imread(path)[..., :3]
    height, width = rgb.shape[:2]
    middle = rgb[int(margin * height): int((1 - margin) * height), int(margin * width): int((1 - margin) * width)]
    grey, saturation = middle.mean(-1), middle.max(-1) - middle.min(-1)
    return float(np.mean((grey < 0.75) | (saturation > 0.25)))


def check_figure(path: Path, min_ink: float = 0.01) -> None:
    """ValueError when the figure at ``path`` is blank or degenerate: less than ``min_ink`` of its
    middle carries data (:func:`ink_fraction`)."""
    ink = ink_fraction(path)
    if ink < min_ink:
        raise ValueError(f"{path} shows (almost) nothing: {ink:.1%} of its middle carries data")
