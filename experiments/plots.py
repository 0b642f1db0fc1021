"""Plotting helpers shared by the experiments (matplotlib, Agg backend, PNG files)."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def save_figure(fig, out: Path, name: str) -> str:
    """Write ``fig`` to out/figures/<name>.png and close it; returns the path relative to ``out``."""
    path = Path(out) / "figures" / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return str(path.relative_to(out))


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


def image_mosaic(images) -> np.ndarray:
    """Tile images (R, C, H, W) into one (R H, C W) array, row 0 on top."""
    images = np.asarray(images)
    rows, cols, height, width = images.shape
    return images.transpose(0, 2, 1, 3).reshape(rows * height, cols * width)


def training_curves(ax, histories: dict, column: str = "elbo", title: str = "") -> None:
    """Plot ``column`` against epoch for each labelled history DataFrame."""
    for label, history in histories.items():
        ax.plot(history["epoch"], history[column], label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"{column} per row (nats)")
    ax.legend(fontsize=8)
    ax.set_title(title)


def real_vs_synthetic(real, synthetic, title: str = "", seed: int = 0, size: int = 1000):
    """PCA and t-SNE of real vs synthetic windows (N, T, D), as in TimeGAN's pictures.

    Up to ``size`` windows of each set are drawn, each reduced to its per-step mean over features
    (a point in R^T); PCA is fitted on the real points. Returns the figure (two panels).
    """
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
