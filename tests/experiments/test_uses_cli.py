"""``dlvm anomaly`` and ``dlvm encode`` end to end, against scikit-learn and by-hand numbers,
and their one-line answers to bad input."""
import numpy as np
import pandas as pd
import pytest
from sklearn.decomposition import FactorAnalysis as SkFactorAnalysis

from dlvm.experiments.cli import main
from dlvm.experiments.runs.folders import load_run


def write_csv(path, x, dates=True):
    frame = pd.DataFrame(x, columns=[f"c{i}" for i in range(x.shape[1])])
    if dates:
        frame.insert(0, "date", pd.date_range("2020-01-01", periods=len(x)).strftime("%Y-%m-%d"))
    frame.to_csv(path, index=False)
    return path


def assert_one_line_errors(cases: dict, folder, capsys) -> None:
    """Each command line of ``cases`` exits 2 with one line on stderr and writes nothing in ``folder``."""
    capsys.readouterr()
    for name, argv in cases.items():
        before = sorted(folder.iterdir())
        assert main(argv) == 2, name
        err = capsys.readouterr().err.strip()
        assert err.startswith("dlvm: error: ") and len(err.splitlines()) == 1, (name, err)
        assert sorted(folder.iterdir()) == before, name


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("uses")
    rng = np.random.default_rng(1)  # a seed whose FA fit has no Heywood case (no noise variance near 0)
    x = rng.normal(size=(160, 2)) @ rng.normal(size=(2, 5)) + rng.normal(size=(160, 5))
    train = write_csv(folder / "train.csv", x[:120])
    new = write_csv(folder / "new.csv", x[120:] + np.r_[[[10.0, 0, 0, 0, 0]], np.zeros((39, 5))])  # row 0 shifted
    fa = folder / "fa"
    assert main(["fit", "fa", "--data", str(train), "--latent-dim", "2", "--out", str(fa),
                 "--optimizer", "lbfgs", "--quiet"]) == 0
    vae = folder / "vae"
    assert main(["fit", "vae", "--data", str(train), "--latent-dim", "2", "--hidden", "8", "--epochs", "5",
                 "--out", str(vae), "--iwae-samples", "2", "--quiet"]) == 0
    series = write_csv(folder / "series.csv", x[:, :2])
    hmm = folder / "hmm"
    assert main(["fit", "hmm", "--data", str(series), "--states", "2", "--out", str(hmm), "--optimizer", "lbfgs",
                 "--epochs", "3", "--quiet"]) == 0
    vrae = folder / "vrae"
    assert main(["fit", "vrae", "--data", str(series), "--window", "10", "--latent-dim", "2", "--hidden", "4",
                 "--epochs", "1", "--iwae-samples", "2", "--out", str(vrae), "--quiet"]) == 0
    return {"folder": folder, "x": x, "train": train, "new": new, "fa": fa, "vae": vae, "hmm": hmm, "vrae": vrae}


def sklearn_fa(run_path):
    """scikit-learn's FactorAnalysis carrying the run's fitted parameters."""
    model = load_run(run_path).model
    sk = SkFactorAnalysis(2)
    sk.mean_ = model.loc.detach().numpy()
    sk.components_ = model.loadings.detach().numpy().T
    sk.noise_variance_ = model.psi.detach().numpy()
    return sk


def test_fa_anomaly_scores_are_sklearn_log_densities_and_percentiles(files, capsys):
    out = files["folder"] / "scores.csv"
    assert main(["anomaly", str(files["fa"]), "--data", str(files["new"]), "--out", str(out)]) == 0
    assert "exact negative log-likelihood" in capsys.readouterr().out
    scores = pd.read_csv(out, index_col="date")
    assert list(scores.columns) == ["nll", "nll_se", "percentile", "estimator"] and len(scores) == 40
    sk = sklearn_fa(files["fa"])
    shifted = files["x"][120:] + np.r_[[[10.0, 0, 0, 0, 0]], np.zeros((39, 5))]
    np.testing.assert_allclose(-scores["nll"], sk.score_samples(shifted), rtol=1e-9)
    train_nll = -sk.score_samples(files["x"][:120])
    by_hand = [100 * np.mean(train_nll <= s) for s in scores["nll"]]
    np.testing.assert_allclose(scores["percentile"], by_hand)
    assert (scores["estimator"] == "exact").all() and (scores["nll_se"] == 0).all()
    assert scores["percentile"].iloc[0] == 100.0  # the shifted row is beyond every training row


def test_vae_anomaly_scores_state_k_and_their_error(files, capsys):
    out = files["folder"] / "vae_scores.csv"
    assert main(["anomaly", str(files["vae"]), "--out", str(out), "--iwae-samples", "7"]) == 0
    message = capsys.readouterr().out
    assert "IWAE-7" in message and "K = 7" in message
    scores = pd.read_csv(out, index_col="date")
    assert len(scores) == 120 and (scores["estimator"] == "IWAE-7").all()
    assert (scores["nll_se"] > 0).all() and scores["percentile"].between(0, 100).all()
    assert scores["percentile"].max() == 100.0  # scored against itself: the worst row is the top


def test_hmm_scores_every_day_and_windows_are_labelled_by_their_start(files, capsys):
    out = files["folder"] / "hmm_scores.csv"
    assert main(["anomaly", str(files["hmm"]), "--out", str(out)]) == 0
    assert "one-step-ahead" in capsys.readouterr().out
    scores = pd.read_csv(out, index_col="date")
    assert len(scores) == 160 and scores.index[0] == "2020-01-01" and (scores["estimator"] == "exact one-step").all()
    by_hand = [100 * np.mean(scores["nll"] <= s) for s in scores["nll"]]  # against its own training days
    np.testing.assert_allclose(scores["percentile"], by_hand)
    out = files["folder"] / "vrae_scores.csv"
    assert main(["anomaly", str(files["vrae"]), "--out", str(out), "--iwae-samples", "3"]) == 0
    windows = pd.read_csv(out, index_col="window_start")
    assert list(windows.index[:2]) == ["2020-01-01", "2020-01-11"] and len(windows) == 16


def test_encode_fa_gives_the_closed_form_posterior(files, capsys):
    out = files["folder"] / "latents.csv"
    assert main(["encode", str(files["fa"]), "--data", str(files["train"]), "--out", str(out)]) == 0
    assert "exact posterior" in capsys.readouterr().out
    latents = pd.read_csv(out, index_col="date")
    assert list(latents.columns) == ["mean_z0", "mean_z1", "sd_z0", "sd_z1"]
    sk = sklearn_fa(files["fa"])
    lam, psi = sk.components_.T, sk.noise_variance_
    m = np.eye(2) + lam.T @ (lam / psi[:, None])
    mean = np.linalg.solve(m, (lam / psi[:, None]).T @ (files["x"][:120] - sk.mean_).T).T
    np.testing.assert_allclose(latents[["mean_z0", "mean_z1"]], mean, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(latents[["sd_z0", "sd_z1"]].iloc[0], np.sqrt(np.diag(np.linalg.inv(m))), rtol=1e-7)


def test_encode_vae_gives_the_guide_moments(files, capsys):
    out = files["folder"] / "vae_latents.csv"
    assert main(["encode", str(files["vae"]), "--out", str(out)]) == 0
    assert "amortized q(z|x)" in capsys.readouterr().out
    latents = pd.read_csv(out)
    assert latents.shape == (120, 5) and (latents[["sd_z0", "sd_z1"]] > 0).all().all()


def test_bad_input_one_line_exit_2(files, capsys):
    folder = files["folder"]
    narrow = write_csv(folder / "narrow.csv", files["x"][:20, :4])
    renamed = folder / "renamed.csv"
    pd.read_csv(files["new"]).rename(columns={"c0": "price"}).to_csv(renamed, index=False)
    cases = {
        "missing run": ["anomaly", str(folder / "nope"), "--out", str(folder / "a.csv")],
        "wrong columns": ["anomaly", str(files["fa"]), "--data", str(narrow), "--out", str(folder / "b.csv")],
        "no samples": ["anomaly", str(files["vae"]), "--iwae-samples", "0", "--out", str(folder / "c.csv")],
        "renamed columns": ["anomaly", str(files["fa"]), "--data", str(renamed), "--out", str(folder / "f.csv")],
        "existing output": ["anomaly", str(files["fa"]), "--out", str(files["train"])],
        "cannot encode": ["encode", str(files["hmm"]), "--out", str(folder / "d.csv")],
        "encode no samples": ["encode", str(files["vae"]), "--samples", "0", "--out", str(folder / "g.csv")],
        "encode wrong columns": ["encode", str(files["vae"]), "--data", str(narrow), "--out", str(folder / "e.csv")],
    }
    assert_one_line_errors(cases, folder, capsys)


def test_scores_are_reproducible_and_a_bayesian_run_is_scored_against_the_same_globals(files, tmp_path):
    bayes = tmp_path / "bfa"
    assert main(["fit", "fa", "--data", str(files["train"]), "--latent-dim", "2", "--bayesian", "--guide", "exact",
                 "--epochs", "5", "--out", str(bayes), "--quiet"]) == 0
    first, again = tmp_path / "a.csv", tmp_path / "b.csv"
    for out in (first, again):
        assert main(["anomaly", str(bayes), "--data", str(files["train"]), "--out", str(out)]) == 0
    a, b = pd.read_csv(first), pd.read_csv(again)
    pd.testing.assert_frame_equal(a, b)
    # scored on its own training data, the percentiles are the empirical CDF of the scores themselves
    np.testing.assert_allclose(a["percentile"], [100 * np.mean(a["nll"] <= s) for s in a["nll"]])
