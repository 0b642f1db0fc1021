"""VRAE: training on sequences, reconstructions against the per-step mean, shapes, bad input."""
import numpy as np
import pytest
import torch

from dlvm.experiments.data.sets import ecg5000
from dlvm.guides import pair
from dlvm.inference import fit
from dlvm.models import VRAE, build_model


@pytest.mark.parametrize("cell", ["gru", "lstm", "transformer"])
def test_reconstructions_beat_the_per_step_mean(cell):
    series, _ = ecg5000()
    x = series[:300, ::2, None].astype(np.float32)  # 300 heartbeats, 70 steps
    model, guide = pair(build_model("vrae", x.shape[1:], {"latent_dim": 8, "hidden": (32,), "cell": cell}),
                        "amortized", x.shape[1:], hidden=(32,))
    fit(model, guide, x, epochs=60, batch_size=50, lr=1e-2, clip_norm=10.0, progress=False)
    recon = model.reconstruct(torch.as_tensor(x), guide).numpy()
    vrae_mse = np.mean((recon - x) ** 2)
    baseline_mse = np.mean((x.mean(0, keepdims=True) - x) ** 2)
    assert vrae_mse < 0.9 * baseline_mse


@pytest.mark.parametrize("feed_latent", [True, False])
def test_shapes_and_other_lengths(feed_latent):
    model, guide = pair(VRAE(3, 10, 2, (8, 8), "lstm", feed_latent=feed_latent), "amortized", (10, 3), hidden=(8,))
    x = torch.randn(20, 10, 3)
    fit(model, guide, x, epochs=1, batch_size=10, progress=False)
    assert model.sample(4).shape == (4, 10, 3)
    assert model.sample(4, steps=17).shape == (4, 17, 3)
    assert model.reconstruct(torch.randn(2, 6, 3), guide).shape == (2, 6, 3)


def test_transformer_decoder_shapes_and_encoder():
    model, guide = pair(VRAE(3, 10, 2, (8, 8), "transformer"), "amortized", (10, 3), hidden=(8,))
    assert type(guide.encoder).__name__ == "TransformerEncoder"
    fit(model, guide, torch.randn(20, 10, 3), epochs=1, batch_size=10, progress=False)
    assert model.sample(4).shape == (4, 10, 3) and model.sample(4, steps=17).shape == (4, 17, 3)
    assert not any(name.startswith("rnn") for name, _ in model.named_parameters())


def test_wrong_rank_is_a_one_line_error():
    with pytest.raises(ValueError, match=r"\(N, T, D\)") as err:
        build_model("vrae", (30,), {})
    assert "\n" not in str(err.value)
    model, guide = pair(VRAE(2, 5), "amortized", (5, 2))
    with pytest.raises(ValueError, match="shape") as err:
        fit(model, guide, np.zeros((8, 10)), epochs=1, progress=False)
    assert "\n" not in str(err.value)


def test_bad_options():
    with pytest.raises(ValueError, match="cell"):
        VRAE(2, 5, cell="rnn")
    with pytest.raises(ValueError, match="likelihood"):
        VRAE(2, 5, likelihood="poisson")
