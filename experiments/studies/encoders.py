"""Sequential encoders and decoders compared (§6.6.1.1): GRU, LSTM, convolutions, self-attention.

On ECG5000 (the 500 shipped heartbeats, split 80/20 as in the vrae-ecg experiment) each
configuration is trained with the same budget: the VRAE with a GRU decoder and each encoder
(GRU, LSTM, stride-1 convolutions, Transformer), the VRAE with the Transformer decoder (and
encoder), and the TimeVAE with its stride-2 convolutional encoder and with the Transformer
encoder. Reported: the adjusted Rand index of k-means (k = 5) on the latent means of all beats
against the labels, the test IWAE-100 (nats per beat) and the training time per epoch.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.model_selection import train_test_split

from ...guides import pair
from ...inference import evaluate, fit
from ...models import build_model

from ..data.sets import ecg5000
from ..reporting.metrics import kmeans_ari
from ..reporting.plots import figure, save_figure

#: label -> (model, model options, encoder)
CONFIGS = {
    "VRAE, GRU encoder": ("vrae", {"cell": "gru"}, "gru"),
    "VRAE, LSTM encoder": ("vrae", {"cell": "gru"}, "lstm"),
    "VRAE, conv encoder": ("vrae", {"cell": "gru"}, "conv"),
    "VRAE, Transformer encoder": ("vrae", {"cell": "gru"}, "transformer"),
    "VRAE, Transformer encoder + decoder": ("vrae", {"cell": "transformer"}, "transformer"),
    "TimeVAE, conv-stride2 encoder": ("timevae", {"likelihood": "gaussian"}, "conv-stride2"),
    "TimeVAE, Transformer encoder": ("timevae", {"likelihood": "gaussian"}, "transformer"),
}


def compare(x: np.ndarray, labels: np.ndarray, *, epochs: int, hidden: tuple, seed: int, device: str = "cpu",
            progress: bool = False, configs=None) -> pd.DataFrame:
    """One row per configuration: ARI, test IWAE-100 and seconds per epoch on beats x (N, T, 1)."""
    train, test = train_test_split(np.arange(len(x)), test_size=0.2, random_state=seed)
    rows = []
    for label, (name, options, encoder) in (configs or CONFIGS).items():
        if progress:
            print(f"  {label}", flush=True)
        torch.manual_seed(seed)
        width = hidden if name == "vrae" else (hidden[0] // 2, hidden[0])
        model = build_model(name, x.shape[1:], {"latent_dim": 8, "hidden": list(width), **options})
        trained, guide = pair(model, "amortized", x.shape[1:], encoder=encoder, hidden=hidden)
        result = fit(trained, guide, x[train], epochs=epochs, batch_size=50, lr=3e-3, clip_norm=10.0, seed=seed,
                     device=device, progress=False)
        iwae = evaluate(trained, guide, x[test], num_samples=100).summary()["iwae"]
        means = guide.encode(torch.as_tensor(x, dtype=trained.dtype, device=trained.device)).cpu().numpy()
        rows.append({"configuration": label, "ARI": kmeans_ari(means, labels, 5, seed), "test IWAE-100": iwae,
                     "seconds per epoch": result.seconds / max(result.epochs_run, 1),
                     "parameters": sum(p.numel() for p in (*trained.parameters(), *guide.parameters()))})
    return pd.DataFrame(rows)


def comparison_figure(table: pd.DataFrame, out: Path) -> str:
    """ARI, test IWAE and seconds per epoch per configuration, as three bar panels."""
    fig, axes = figure(3, 1, width=4.4, height=3.4)
    names = table["configuration"].str.replace(", ", "\n", n=1)
    for ax, column in zip(axes, ("ARI", "test IWAE-100", "seconds per epoch")):
        ax.barh(names, table[column], color=["tab:orange" if c.startswith("TimeVAE") else "tab:blue"
                                             for c in table["configuration"]])
        ax.set_title(column + (" (higher is better)" if column != "seconds per epoch" else ""))
        ax.invert_yaxis()
        ax.tick_params(axis="y", labelsize=8)
    for ax in axes[1:]:
        ax.set_yticklabels([])
    return save_figure(fig, out, "encoder_comparison")


def run(out: Path, *, quick: bool, seed: int = 0, device: str = "cpu", progress: bool = False) -> dict:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    series, labels = ecg5000()
    x = series[:, :: 4 if quick else 1, None].astype(np.float32)  # quick: every fourth sample (35 steps)
    epochs = 10 if quick else 150
    table = compare(x, labels, epochs=epochs, hidden=(32,) if quick else (64,), seed=seed, device=device,
                    progress=progress)
    table.to_csv(out / "encoder_comparison.csv", index=False)
    best = table.loc[table["ARI"].idxmax()]
    fastest = table.loc[table["seconds per epoch"].idxmin()]
    caption = (f"ECG5000, {x.shape[1]} steps, {epochs} epochs each: the best clustering comes from {best['configuration']} "
               f"(ARI {best['ARI']:.2f}), the best test IWAE from "
               f"{table.loc[table['test IWAE-100'].idxmax(), 'configuration']} "
               f"({table['test IWAE-100'].max():.1f} nats per beat); the fastest is {fastest['configuration']} "
               f"({fastest['seconds per epoch']:.2f} s per epoch).")
    return {"epochs": epochs, "steps": int(x.shape[1]), "table": table.to_dict("records"),
            "files": ["encoder_comparison.csv", comparison_figure(table, out)], "caption": caption}
