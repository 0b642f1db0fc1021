"""``dlvm forecast`` end to end: an FA imputation against the closed-form conditional, forecasts of
the HMM and the VRAE, and one-line answers to bad input."""
import numpy as np
import pandas as pd
import pytest

from dlvm.experiments.cli import main
from dlvm.experiments.runs.folders import load_run

from .test_uses_cli import assert_one_line_errors, write_csv


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("forecast")
    rng = np.random.default_rng(1)
    x = rng.normal(size=(160, 2)) @ rng.normal(size=(2, 4)) + rng.normal(size=(160, 4))
    train = write_csv(folder / "train.csv", x[:120])
    holes = x[120:].copy()
    holes[0, 1] = holes[3, 2] = np.nan
    gaps = write_csv(folder / "gaps.csv", holes)
    fa = folder / "fa"
    assert main(["fit", "fa", "--data", str(train), "--latent-dim", "2", "--out", str(fa), "--quiet"]) == 0  # by EM
    series = write_csv(folder / "series.csv", x[:, :2])
    hmm = folder / "hmm"
    assert main(["fit", "hmm", "--data", str(series), "--states", "2", "--out", str(hmm), "--optimizer", "lbfgs", "--epochs", "3",
                 "--quiet"]) == 0
    vrae = folder / "vrae"
    assert main(["fit", "vrae", "--data", str(series), "--window", "10", "--latent-dim", "2", "--hidden", "4",
                 "--epochs", "1", "--iwae-samples", "2", "--out", str(vrae), "--quiet"]) == 0
    gmm = folder / "gmm"
    assert main(["fit", "gmm", "--data", str(train), "--components", "2", "--out", str(gmm), "--optimizer", "lbfgs",
                 "--epochs", "2", "--quiet"]) == 0
    dlm = folder / "dlm"
    assert main(["fit", "timevae", "--data", str(series), "--window", "16", "--stride", "4", "--hidden", "4,8",
                 "--local-level", "--ar-order", "2", "--trend-poly", "1", "--epochs", "1", "--iwae-samples", "2",
                 "--out", str(dlm), "--quiet"]) == 0
    return {"folder": folder, "x": x, "gaps": gaps, "fa": fa, "hmm": hmm, "vrae": vrae, "gmm": gmm, "series": series,
            "dlm": dlm}


def test_fa_imputes_the_missing_entries_by_the_conditional_gaussian(files, capsys):
    out = files["folder"] / "imputed.csv"
    assert main(["forecast", str(files["fa"]), "--data", str(files["gaps"]), "--missing", "mask",
                 "--samples", "4000", "--out", str(out)]) == 0
    assert "exact conditional Gaussian" in capsys.readouterr().out
    table = pd.read_csv(out)
    assert list(table["feature"]) == ["c1", "c2"] and list(table["date"]) == ["2020-01-01", "2020-01-04"]
    model = load_run(files["fa"]).model
    cov = (model.loadings @ model.loadings.T + model.psi.diag()).detach().numpy()
    loc = model.loc.detach().numpy()
    row = files["x"][120]
    o = [0, 2, 3]
    mean = loc[1] + cov[1, o] @ np.linalg.solve(cov[np.ix_(o, o)], row[o] - loc[o])
    sd = np.sqrt(cov[1, 1] - cov[1, o] @ np.linalg.solve(cov[np.ix_(o, o)], cov[o, 1]))
    assert table["mean"][0] == pytest.approx(mean, abs=4 * sd / np.sqrt(4000))
    assert table["sd"][0] == pytest.approx(sd, rel=0.05)
    assert (table["q05"] < table["q50"]).all() and (table["q50"] < table["q95"]).all()


def test_forecasts_of_the_last_steps(files):
    out = files["folder"] / "hmm.csv"
    assert main(["forecast", str(files["hmm"]), "--horizon", "3", "--samples", "50", "--out", str(out)]) == 0
    table = pd.read_csv(out)
    assert len(table) == 3 * 2 and list(table["step"].unique()) == [157, 158, 159]
    np.testing.assert_allclose(table["actual"], files["x"][157:160, :2].ravel())
    out = files["folder"] / "vrae.csv"
    assert main(["forecast", str(files["vrae"]), "--horizon", "4", "--samples", "30", "--particles", "8",
                 "--out", str(out)]) == 0
    table = pd.read_csv(out, index_col="window_start")
    assert len(table) == 16 * 4 * 2 and set(table["step"]) == {6, 7, 8, 9}
    assert (table["ess"] >= 1 - 1e-6).all() and (table["sd"] > 0).all()


def test_a_run_with_dlm_blocks_reloads(files):
    run = load_run(files["dlm"])
    assert run.config["model_options"]["ar_order"] == 2 and run.model.states.ar_order == 2


def test_bad_input_one_line_exit_2(files, capsys):
    folder = files["folder"]
    cases = {
        "horizon = window": ["forecast", str(files["vrae"]), "--horizon", "10", "--out", str(folder / "a.csv")],
        "horizon 0": ["forecast", str(files["vrae"]), "--horizon", "0", "--out", str(folder / "b.csv")],
        "cannot forecast": ["forecast", str(files["gmm"]), "--out", str(folder / "c.csv")],
        "table with horizon": ["forecast", str(files["fa"]), "--horizon", "1", "--out", str(folder / "d.csv")],
        "nothing missing": ["forecast", str(files["fa"]), "--out", str(folder / "e.csv")],
        "state blocks": ["forecast", str(files["dlm"]), "--horizon", "2", "--out", str(folder / "g.csv")],
        "no particles": ["forecast", str(files["vrae"]), "--horizon", "2", "--particles", "0",
                         "--out", str(folder / "h.csv")],
        "one draw": ["forecast", str(files["hmm"]), "--horizon", "1", "--samples", "1", "--out", str(folder / "f.csv")],
    }
    assert_one_line_errors(cases, folder, capsys)
