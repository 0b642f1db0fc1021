"""Sequential encoders and decoders compared (§6.6.1.1): GRU, LSTM, convolutions, self-attention.

On ECG5000 (the 500 shipped heartbeats, split 80/20 as in the vrae-ecg experiment) each
configuration is trained with the same budget: the VRAE with a GRU decoder and each encoder
(GRU, LSTM, stride-1 convolutions, Transformer), the VRAE with the Transformer decoder (and
encoder), and the TimeVAE with its stride-2 convolutional encoder and with the Transformer
encoder. Reported: the adjusted Rand index of k-means (k = 5) on the latent means of all beats
against the labels, the test IWAE-100 (nats per beat) and the training time per epoch.

Beside them, the TimeGAN scores on stocks (:func:`stock_scores`): every configuration is fitted
again, with the same options, to TimeGAN's Google stock windows (24 steps x 6 features in [0, 1];
quick mode: the first 1,000 windows, 15 epochs, 3 repeats of 300-step scorers; full mode: all 3,661, 100
epochs and the TimeGAN protocol of 10 repeats of 2,000 discriminative / 5,000 predictive steps),
draws as many windows as it was fitted to (z from the prior, samples E[x | z] for every
configuration alike) and is scored with :func:`dlvm.experiments.timegan_metrics.timegan_scores`
against the windows it was fitted to: discriminative (|accuracy - 0.5| of a post-hoc GRU
classifier, 0 best), predictive (MAE of a GRU trained on the synthetic windows, tested on the
real ones; the real-data reference is a GRU trained on the real windows) and correlational
(Diffusion-TS's lag-0 cross-correlation gap, 0 best).
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

from ..data.sets import ecg5000, timegan_stocks
from ..reporting.metrics import kmeans_ari
from ..reporting.plots import figure, save_figure
from ..reporting.timegan_metrics import METRICS, timegan_scores

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


#: the TimeGAN scores' columns in the comparison table (mean over repeats; "sd" beside each)
STOCK_COLUMNS = {m: f"stocks {m}" for m in METRICS}


def _build(name: str, options: dict, encoder: str, shape: tuple, hidden: tuple):
    """Model and amortized guide of one configuration for windows of ``shape`` (T, D)."""
    width = hidden if name == "vrae" else (hidden[0] // 2, hidden[0])
    model = build_model(name, shape, {"latent_dim": 8, "hidden": list(width), **options})
    return pair(model, "amortized", shape, encoder=encoder, hidden=hidden)


def _fitted(config: tuple, x: np.ndarray, *, epochs: int, hidden: tuple, batch_size: int, seed: int, device: str):
    """One configuration (model name, options, encoder) built and fitted to x (N, T, D):
    (model, guide, FitResult)."""
    name, options, encoder = config
    torch.manual_seed(seed)
    trained, guide = _build(name, options, encoder, x.shape[1:], hidden)
    result = fit(trained, guide, x, epochs=epochs, batch_size=batch_size, lr=3e-3, clip_norm=10.0, seed=seed,
                 device=device, progress=False)
    return trained, guide, result


def compare(x: np.ndarray, labels: np.ndarray, *, epochs: int, hidden: tuple, seed: int, device: str = "cpu",
            progress: bool = False, configs=None) -> pd.DataFrame:
    """One row per configuration: ARI, test IWAE-100 and seconds per epoch on beats x (N, T, 1)."""
    train, test = train_test_split(np.arange(len(x)), test_size=0.2, random_state=seed)
    rows = []
    for label, config in (configs or CONFIGS).items():
        if progress:
            print(f"  {label}", flush=True)
        trained, guide, result = _fitted(config, x[train], epochs=epochs, hidden=hidden, batch_size=50, seed=seed,
                                         device=device)
        iwae = evaluate(trained, guide, x[test], num_samples=100).summary()["iwae"]
        means = guide.encode(torch.as_tensor(x, dtype=trained.dtype, device=trained.device)).cpu().numpy()
        rows.append({"configuration": label, "ARI": kmeans_ari(means, labels, 5, seed), "test IWAE-100": iwae,
                     "seconds per epoch": result.seconds / max(result.epochs_run, 1),
                     "parameters": sum(p.numel() for p in (*trained.parameters(), *guide.parameters()))})
    return pd.DataFrame(rows)


def stock_scores(windows: np.ndarray, *, epochs: int, hidden: tuple, seed: int, repeats: int,
                 discriminative_steps: int, predictive_steps: int, metrics=METRICS, device: str = "cpu",
                 progress: bool = False, configs=None) -> tuple[pd.DataFrame, dict]:
    """TimeGAN scores of each configuration fitted to ``windows`` (N, T, D) and sampled N times.

    Returns one row per configuration (``STOCK_COLUMNS`` means, their "sd" over the repeats, and
    seconds per epoch on the stocks) and the real-data reference (the predictive score of a GRU
    trained on the real windows; empty when the predictive score is not asked for)."""
    metrics = [metrics] if isinstance(metrics, str) else list(metrics)
    windows = np.asarray(windows, dtype=np.float32)
    score = dict(repeats=repeats, discriminative_steps=discriminative_steps, predictive_steps=predictive_steps,
                 seed=seed, device=device)
    reference = timegan_scores(windows, windows, ("predictive",), **score) if "predictive" in metrics else {}
    rows = []
    for label, config in (configs or CONFIGS).items():
        if progress:
            print(f"  {label} (stocks)", flush=True)
        trained, _, result = _fitted(config, windows, epochs=epochs, hidden=hidden, batch_size=64, seed=seed,
                                     device=device)
        torch.manual_seed(seed + 1)
        with torch.no_grad():
            fake = trained.sample(len(windows), noise=False).cpu().numpy().astype(np.float64)
        scores = timegan_scores(windows, fake, metrics, **score)
        row = {"configuration": label}
        for metric in metrics:
            row[STOCK_COLUMNS[metric]] = scores[metric]
            row[STOCK_COLUMNS[metric] + " sd"] = scores[f"{metric}_std"]
        row["stocks seconds per epoch"] = result.seconds / max(result.epochs_run, 1)
        rows.append(row)
    return pd.DataFrame(rows), reference


def comparison_figure(table: pd.DataFrame, out: Path, reference: dict | None = None) -> str:
    """ARI, test IWAE and seconds per epoch per configuration, as bar panels; below them, in a second
    row, the TimeGAN scores on stocks that the table holds (mean with a bar of one sd over the
    repeats, the real-data predictive reference as a dashed line)."""
    rows = [["ARI", "test IWAE-100", "seconds per epoch"]]
    stocks = [c for c in STOCK_COLUMNS.values() if c in table]
    if stocks:
        rows.append(stocks + [None] * (3 - len(stocks)))
    fig, axes = figure(3, len(rows), width=4.0, height=3.4, squeeze=False)
    names = table["configuration"].str.replace(", ", "\n", n=1)
    colours = ["tab:orange" if c.startswith("TimeVAE") else "tab:blue" for c in table["configuration"]]
    for row, columns in zip(axes, rows):
        for k, (ax, column) in enumerate(zip(row, columns)):
            if column is None:
                ax.set_visible(False)
                continue
            sd = table[column + " sd"] if column + " sd" in table else None
            ax.barh(names, table[column], xerr=sd, color=colours, ecolor="0.3", capsize=2)
            if column.startswith("stocks"):
                title = f"stocks: {column.split()[1]} score (lower is better)"
            else:
                title = "ECG5000: " + column + (" (higher is better)" if column != "seconds per epoch" else "")
            ax.set_title(title, fontsize=9)
            if column == STOCK_COLUMNS["predictive"] and reference and "predictive" in reference:
                ax.axvline(reference["predictive"], color="k", ls="--", lw=1, label="GRU trained on real")
                ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.12), frameon=False)
            ax.invert_yaxis()
            ax.tick_params(axis="y", labelsize=8)
            if k:
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
    stocks = timegan_stocks()[: 1000 if quick else None]
    s = (dict(epochs=15, repeats=3, discriminative_steps=300, predictive_steps=300) if quick else
         dict(epochs=100, repeats=10, discriminative_steps=2000, predictive_steps=5000))
    scores, reference = stock_scores(stocks, hidden=(32,) if quick else (64,), seed=seed, device=device,
                                     progress=progress, **s)
    table = table.merge(scores, on="configuration")
    table.to_csv(out / "encoder_comparison.csv", index=False)
    best = table.loc[table["ARI"].idxmax()]
    fastest = table.loc[table["seconds per epoch"].idxmin()]
    caption = (f"ECG5000, {x.shape[1]} steps, {epochs} epochs each: the best clustering comes from {best['configuration']} "
               f"(ARI {best['ARI']:.2f}), the best test IWAE from "
               f"{table.loc[table['test IWAE-100'].idxmax(), 'configuration']} "
               f"({table['test IWAE-100'].max():.1f} nats per beat); the fastest is {fastest['configuration']} "
               f"({fastest['seconds per epoch']:.2f} s per epoch).")
    disc, corr = STOCK_COLUMNS["discriminative"], STOCK_COLUMNS["correlational"]
    caption += (f" On {len(stocks)} TimeGAN stock windows ({s['epochs']} epochs, {s['repeats']} repeats of the scores) "
                f"the lowest discriminative score is {table.loc[table[disc].idxmin(), 'configuration']}'s "
                f"({table[disc].min():.3f}), the lowest correlational score "
                f"{table.loc[table[corr].idxmin(), 'configuration']}'s ({table[corr].min():.3f}); "
                f"a predictor trained on the real windows scores {reference['predictive']:.4f}.")
    return {"epochs": epochs, "steps": int(x.shape[1]), "stock_windows": len(stocks), "stock_epochs": s["epochs"],
            "stock_scoring": {k: v for k, v in s.items() if k != "epochs"},
            "stocks_real_predictive": reference["predictive"], "table": table.to_dict("records"),
            "files": ["encoder_comparison.csv", comparison_figure(table, out, reference)], "caption": caption}
