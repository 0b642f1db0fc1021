"""VAE on scikit-learn's digits (§6.5): test ELBO and IWAE-K, the learned manifold (Figure 6.7).

The 1,797 8x8 images are binarised at half intensity and modelled with a Bernoulli decoder and
a 2-D latent, split 75/25 (stratified) into train and test. Reported per test image (nats): the
ELBO and the importance-weighted bound IWAE-K with K = 500 of the trained and of an untrained
model. Figures: the decoded grid over the latent plane (as Figure 6.7), test latent means coloured
by digit, and the training ELBO with reparameterised vs score-function gradients (§6.4.3).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.model_selection import train_test_split

from ..data.sets import digits
from ..reporting.plots import image_mosaic, plt, save_figure, scatter_by_label, training_curves
from ...guides import pair
from ...inference import evaluate, fit
from ...models import VAE
from ...models.decoders import grid_coordinates

IWAE_SAMPLES = 500
GRID_SIZE = 12  # cells per side of the manifold figure


def build(latent_dim: int, hidden: tuple, reparameterized: bool = True):
    """The VAE (Bernoulli decoder) and its MLP-encoder guide for 8x8 = 64-pixel rows."""
    return pair(VAE((64,), latent_dim, hidden, "bernoulli"), "amortized", (64,),
                hidden=hidden, reparameterized=reparameterized)


def manifold_figure(model, out: Path, size: int = GRID_SIZE) -> str:
    """Figure 6.7: decoded means on a size x size grid of the latent plane, cells apart on a grey
    ground, axes labelled with the cells' latent coordinates (z_2 grows upwards)."""
    grid = model.grid(size).cpu().numpy().reshape(size, size, 8, 8)
    coords = grid_coordinates(size).numpy()
    fig, ax = plt.subplots(figsize=(7, 7))
    ax.set_facecolor("#9a9a9a")
    ax.imshow(image_mosaic(grid, pad=2), cmap="gray_r", vmin=0, vmax=1, extent=(0, size, 0, size))
    every = max(1, size // 6)
    ticks = np.arange(size)[::every]
    ax.set_xticks(ticks + 0.5, [f"{coords[i]:.2f}" for i in ticks])
    ax.set_yticks(ticks + 0.5, [f"{coords[i]:.2f}" for i in ticks])
    ax.set_xlabel("z_1 (cell centre)")
    ax.set_ylabel("z_2 (cell centre)")
    ax.grid(False)
    ax.set_title(f"decoded means E[x | z] on a {size} x {size} grid of normal quantiles")
    return save_figure(fig, out, "manifold")


def run(out: Path, *, quick: bool, seed: int = 0, device: str = "cpu", progress: bool = False) -> dict:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    images, labels = digits()
    x = (images.reshape(len(images), 64) > 0.5).astype(np.float32)
    x_train, x_test, y_train, y_test = train_test_split(
        x, labels, test_size=0.25, stratify=labels, random_state=seed
    )
    # a validation split of the training images picks the stopping epoch (the test set stays unseen)
    x_fit, x_val = train_test_split(x_train, test_size=0.15, random_state=seed)
    hidden = (128,) if quick else (256, 128)
    epochs = 40 if quick else 400
    settings = dict(epochs=epochs, batch_size=128, lr=3e-3, seed=seed, device=device, progress=progress,
                    val_data=x_val, early_stopping=None if quick else 20)

    model, guide = build(2, hidden)
    untrained = evaluate(model, guide, x_test, num_samples=IWAE_SAMPLES).summary()
    result = fit(model, guide, x_fit, **settings)
    model, guide = result.model, result.guide
    trained = evaluate(model, guide, x_test, num_samples=IWAE_SAMPLES).summary()

    # the same model trained with the score-function (REINFORCE) gradient only
    sf_model, sf_guide = build(2, hidden, reparameterized=False)
    sf = fit(sf_model, sf_guide, x_fit, elbo="tracegraph", **settings)
    sf_eval = evaluate(sf.model, sf.guide, x_test, num_samples=IWAE_SAMPLES).summary()

    table = pd.DataFrame([
        {"model": "untrained", **untrained},
        {"model": "reparameterized (trace)", **trained},
        {"model": "score function (tracegraph)", **sf_eval},
    ])[["model", "elbo", "iwae", "iwae_samples"]]
    table.to_csv(out / "test_bounds.csv", index=False)
    history = pd.concat([
        result.history.assign(gradient="reparameterized"), sf.history.assign(gradient="score function")
    ])
    history.to_csv(out / "history.csv", index=False)
    files = ["test_bounds.csv", "history.csv"]

    files.append(manifold_figure(model, out))

    test_x = torch.as_tensor(x_test, dtype=model.dtype, device=model.device)
    means = guide.encode(test_x).cpu().numpy()
    fig, ax = plt.subplots(figsize=(6, 5))
    scatter_by_label(ax, means, y_test, "test images: latent means E_q[z | x] by digit")
    ax.set_xlabel("z_1"), ax.set_ylabel("z_2")
    files.append(save_figure(fig, out, "latent_means"))

    fig, ax = plt.subplots(figsize=(6, 4))
    training_curves(ax, {"reparameterized": result.history, "score function": sf.history},
                    title="training ELBO per image")
    files.append(save_figure(fig, out, "gradient_estimators"))

    return {
        "test_elbo": trained["elbo"], "test_iwae": trained["iwae"], "iwae_samples": IWAE_SAMPLES,
        "untrained_test_elbo": untrained["elbo"], "untrained_test_iwae": untrained["iwae"],
        "score_function_test_elbo": sf_eval["elbo"], "latent_dim": 2, "epochs": epochs,
        "epochs_run": len(result.history), "score_function_epochs_run": len(sf.history),
        "train_images": len(x_train), "test_images": len(x_test),
        "files": files,
        "caption": (
            f"A 2-D-latent VAE on binarised 8x8 digits reaches a test ELBO of {trained['elbo']:.2f} nats "
            f"per image (IWAE-{IWAE_SAMPLES} {trained['iwae']:.2f}; untrained {untrained['elbo']:.1f}), "
            "and its decoded latent plane shows the digits arranged smoothly as in Figure 6.7. "
            f"Trained the same way with score-function gradients only, it reaches {sf_eval['elbo']:.2f} "
            f"({'below' if sf_eval['elbo'] < trained['elbo'] else 'not below'} the reparameterised run)."
        ),
    }
