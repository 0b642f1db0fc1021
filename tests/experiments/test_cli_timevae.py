"""The command line for TimeVAE: fit with its blocks, sample on the original scale, score."""
import json

import numpy as np
import pytest

from dlvm.experiments.cli import main
from dlvm.experiments.data import read_data
from dlvm.experiments.reporting.timegan_metrics import timegan_scores


def run_cli(*args):
    return main([str(a) for a in args])


@pytest.fixture
def windows_npz(tmp_path):
    rng = np.random.default_rng(0)
    t = np.arange(8)
    x = np.stack([100 + 10 * np.sin(t / 2 + rng.uniform(0, 6, (40, 1))), rng.normal(5e5, 1e4, (40, 8))], -1)
    path = tmp_path / "windows.npz"
    np.savez(path, data=x)
    return path, x


def test_fit_sample_score(tmp_path, windows_npz, capsys):
    path, x = windows_npz
    out = tmp_path / "run"
    assert run_cli("fit", "timevae", "--data", path, "--out", out, "--latent-dim", 2, "--hidden", "4,8",
                   "--trend-poly", 1, "--seasonality", "2:2", "--no-residual", "--recon-weight", 5,
                   "--epochs", 2, "--iwae-samples", 2, "--quiet") == 0
    options = json.loads((out / "config.json").read_text())["model_options"]
    assert options == {"latent_dim": 2, "hidden": [4, 8], "trend_poly": 1, "seasonality": ["2:2"],
                       "residual": False, "recon_weight": 5.0}
    assert run_cli("sample", out, "-n", 30, "--out", tmp_path / "s.npz") == 0
    draws = np.load(tmp_path / "s.npz")["data"]
    assert draws.shape == (30, 8, 2) and draws[..., 1].mean() > 1e5  # original scale
    capsys.readouterr()
    assert run_cli("score", "--real", path, "--synthetic", tmp_path / "s.npz", "--repeats", 2,
                   "--discriminative-steps", 3, "--predictive-steps", 3) == 0
    captured = capsys.readouterr()
    assert len(captured.out.strip().splitlines()) == 1  # one JSON line for scripts
    scores = json.loads(captured.out)
    assert set(scores) == {"discriminative", "discriminative_std", "predictive", "predictive_std",
                           "correlational", "correlational_std"}
    assert "uses 30 of the 40 real windows" in captured.err
    # 30 windows of each set, 6 of each in a test split: each repeat's |accuracy - 1/2| (the mean
    # -+ sd / sqrt(2) of two) is a multiple of 1/12
    repeats = [scores["discriminative"] + s * scores["discriminative_std"] for s in (-1 / 2 ** 0.5, 1 / 2 ** 0.5)]
    assert timegan_scores(x, draws, repeats=2, discriminative_steps=3, predictive_steps=3) == pytest.approx(scores)
    np.testing.assert_allclose(np.multiply(repeats, 12), np.round(np.multiply(repeats, 12)), atol=1e-6)
    assert run_cli("score", "--real", path, "--synthetic", path, "--metrics", "predictive", "--repeats", 1,
                   "--predictive-steps", 3, "--pretty") == 0
    out = capsys.readouterr().out
    assert set(json.loads(out)) == {"predictive", "predictive_std"} and len(out.strip().splitlines()) == 4


def test_defaults_learn_the_noise_stop_on_a_validation_split_and_sample_the_predictive(tmp_path, windows_npz):
    path, x = windows_npz
    out = tmp_path / "run"
    assert run_cli("fit", "timevae", "--data", path, "--out", out, "--latent-dim", 2, "--hidden", "4,8",
                   "--max-epochs", 3, "--iwae-samples", 2, "--quiet") == 0
    config = json.loads((out / "config.json").read_text())
    assert (config["validation"], config["batch_size"], config["early_stopping"], config["lr"]) == (0.1, 64, 20, 1e-3)
    history = np.genfromtxt(out / "history.csv", delimiter=",", names=True)
    assert len(history) == 3 and np.isfinite(history["val_elbo"]).all()
    for flags, name in (((), "draws.npz"), (("--mean",), "means.npz")):
        assert run_cli("sample", out, "-n", 400, "--out", tmp_path / name, *flags) == 0
    draws, means = np.load(tmp_path / "draws.npz")["data"], np.load(tmp_path / "means.npz")["data"]
    # the predictive adds each feature's noise to the means: more spread
    assert (draws.std(0) > means.std(0)).all()
    assert run_cli("fit", "timevae", "--data", path, "--out", tmp_path / "none", "--hidden", "4,8",
                   "--max-epochs", 2, "--validation", 0, "--iwae-samples", 2, "--quiet") == 0
    history = np.genfromtxt(tmp_path / "none" / "history.csv", delimiter=",", names=True)
    assert np.isnan(history["val_elbo"]).all()


def test_bad_input_one_line(tmp_path, windows_npz, capsys):
    path, _ = windows_npz
    cases = {
        "season too long": ["fit", "timevae", "--data", path, "--out", tmp_path / "a", "--hidden", "4",
                            "--seasonality", "5:2"],
        "window too short": ["fit", "timevae", "--data", path, "--out", tmp_path / "b", "--hidden", "4,8,16,32"],
        "bad metric": ["score", "--real", path, "--synthetic", path, "--metrics", "bogus"],
        "missing file": ["score", "--real", path, "--synthetic", tmp_path / "nope.npz"],
        "bad validation": ["fit", "timevae", "--data", path, "--out", tmp_path / "c", "--validation", 1.5],
    }
    expected = {"season too long": "longer than the window of 8", "window too short": "need at least 16 steps",
                "bad metric": "unknown metric", "missing file": "does not exist",
                "bad validation": "--validation must be a fraction"}
    for name, argv in cases.items():
        assert run_cli(*argv) != 0, name
        err = capsys.readouterr().err.strip()
        assert err.startswith("dlvm: error: ") and len(err.splitlines()) == 1, (name, err)
        assert expected[name] in err, (name, err)


def test_named_sources():
    assert read_data("stocks").x.shape == (3661, 24, 6)
    assert read_data("stockv").x.shape == (3919, 24, 6)
    assert read_data("sines").x.shape == (10000, 24, 5)
