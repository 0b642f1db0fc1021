"""The command line end to end, and its answers to bad input."""
import json
import pickle
import subprocess
import sys

import numpy as np
import pytest
from hmmlearn.hmm import GaussianHMM
from scipy.stats import multivariate_normal
from sklearn.mixture import GaussianMixture

from dlvm.experiments.cli import main
from dlvm.experiments.runs.folders import load_run


@pytest.fixture
def csv(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 2)) @ rng.normal(size=(2, 5)) + rng.normal(size=(120, 5))
    path = tmp_path / "data.csv"
    with open(path, "w") as f:
        f.write("date,a,b,c,d,e\n")
        for i, row in enumerate(x):
            f.write(f"2020-01-{i % 28 + 1:02d}," + ",".join(f"{v:.6f}" for v in row) + "\n")
    return path


def run_cli(*args):
    return main([str(a) for a in args])


def test_fit_evaluate_sample_end_to_end(tmp_path, csv, capsys):
    out = tmp_path / "run"
    assert run_cli("fit", "fa", "--data", csv, "--latent-dim", 2, "--out", out, "--optimizer", "lbfgs", "--quiet") == 0
    assert sorted(p.name for p in out.iterdir()) == [".dlvm-run", "checkpoint.pt", "config.json", "history.csv", "metrics.json"]
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("log_likelihood", "elbo", "iwae", "n_rows", "n_features", "fit_seconds", "model", "guide", "elbo_name"):
        assert key in metrics
    assert metrics["n_rows"] == 120 and metrics["n_features"] == 5 and metrics["guide"] == "exact"
    assert metrics["elbo"] == pytest.approx(metrics["log_likelihood"])
    capsys.readouterr()
    assert run_cli("evaluate", out, "--data", csv, "--iwae-samples", 5) == 0
    scores = json.loads(capsys.readouterr().out)
    assert scores["log_likelihood"] == pytest.approx(metrics["log_likelihood"])
    assert run_cli("sample", out, "-n", 7, "--out", tmp_path / "s.npz") == 0
    assert np.load(tmp_path / "s.npz")["data"].shape == (7, 5)
    assert run_cli("sample", out, "-n", 3, "--out", tmp_path / "s.csv") == 0
    assert (tmp_path / "s.csv").read_text().splitlines()[0] == "a,b,c,d,e"


def test_amortized_fit_writes_bounds_in_order(tmp_path, csv):
    out = tmp_path / "run"
    assert run_cli("fit", "ppca", "--data", csv, "--latent-dim", 2, "--out", out, "--guide", "amortized",
                   "--epochs", 20, "--batch-size", 40, "--iwae-samples", 20, "--quiet") == 0
    m = json.loads((out / "metrics.json").read_text())
    # bounds on the exact log-likelihood, each a Monte-Carlo estimate (a hundredth of slack); the
    # amortized guide starts from the exact posterior, so both sit close to it
    assert m["elbo"] <= m["log_likelihood"] + 0.01 and m["iwae"] <= m["log_likelihood"] + 0.01
    assert m["iwae"] >= m["elbo"] - 0.01 and m["log_likelihood"] - m["elbo"] < 0.05


def bad_inputs(tmp_path, csv):
    """(name, argv) pairs that must each fail with one line on stderr."""
    lines = csv.read_text().splitlines()
    cases = {}

    def write(name, text):
        path = tmp_path / name
        path.write_text(text)
        return path

    cases["nan without mask"] = write("nan.csv", "\n".join(lines[:3] + [lines[3].rsplit(",", 1)[0] + ",nan"] + lines[4:]))
    cases["inf"] = write("inf.csv", "\n".join(lines[:3] + [lines[3].rsplit(",", 1)[0] + ",inf"] + lines[4:]))
    cases["text column"] = write("text.csv", "a,b,label\n1,2,x\n3,4,y\n5,6,z\n")
    cases["one row"] = write("one.csv", "\n".join(lines[:2]))
    cases["header only"] = write("header.csv", lines[0] + "\n")
    cases["empty file"] = write("empty.csv", "")
    cases["missing file"] = tmp_path / "nope.csv"
    cases["directory"] = tmp_path
    argv = {k: ["fit", "fa", "--data", v, "--latent-dim", 2, "--out", tmp_path / f"out-{i}"]
            for i, (k, v) in enumerate(cases.items())}
    argv["latent too large"] = ["fit", "fa", "--data", csv, "--latent-dim", 9, "--out", tmp_path / "o1"]
    argv["latent zero"] = ["fit", "fa", "--data", csv, "--latent-dim", 0, "--out", tmp_path / "o2"]
    argv["unknown model"] = ["fit", "nope", "--data", csv, "--out", tmp_path / "o3"]
    argv["unknown elbo"] = ["fit", "fa", "--data", csv, "--elbo", "bogus", "--out", tmp_path / "o4"]
    argv["unknown guide"] = ["fit", "fa", "--data", csv, "--guide", "bogus", "--out", tmp_path / "o5"]
    return argv


def test_bad_inputs_give_one_line_and_leave_nothing(tmp_path, csv, capsys):
    for name, argv in bad_inputs(tmp_path, csv).items():
        before = set(tmp_path.iterdir())
        code = run_cli(*argv)
        err = capsys.readouterr().err.strip()
        assert code != 0, name
        assert err.startswith("dlvm: error: ") and len(err.splitlines()) == 1, (name, err)
        assert set(tmp_path.iterdir()) == before, name  # no partial run folder


def test_checkpoint_problems(tmp_path, csv, capsys):
    fa, ppca = tmp_path / "fa", tmp_path / "ppca"
    run_cli("fit", "fa", "--data", csv, "--latent-dim", 2, "--out", fa, "--optimizer", "lbfgs", "--quiet")
    run_cli("fit", "ppca", "--data", csv, "--latent-dim", 2, "--out", ppca, "--optimizer", "lbfgs", "--quiet")
    capsys.readouterr()
    # a checkpoint of another model
    (fa / "checkpoint.pt").write_bytes((ppca / "checkpoint.pt").read_bytes())
    assert run_cli("evaluate", fa, "--data", csv) != 0
    assert "written for model 'ppca', not 'fa'" in capsys.readouterr().err
    # a pickle that would run code when unpickled
    (fa / "checkpoint.pt").write_bytes(pickle.dumps(print))
    assert run_cli("evaluate", fa, "--data", csv) != 0
    assert "not a readable dlvm checkpoint" in capsys.readouterr().err
    # a truncated checkpoint
    (fa / "checkpoint.pt").write_bytes((ppca / "checkpoint.pt").read_bytes()[:100])
    assert run_cli("sample", fa, "-n", 2, "--out", tmp_path / "s.npz") != 0
    assert "dlvm: error:" in capsys.readouterr().err and not (tmp_path / "s.npz").exists()
    # not a run folder
    assert run_cli("evaluate", tmp_path / "nothing", "--data", csv) != 0
    assert "does not exist" in capsys.readouterr().err


def test_existing_run_is_refused_unless_overwrite(tmp_path, csv, capsys):
    out = tmp_path / "run"
    args = ["fit", "fa", "--data", csv, "--latent-dim", 2, "--out", out, "--optimizer", "lbfgs", "--quiet"]
    assert run_cli(*args) == 0
    stamp = (out / "metrics.json").read_text()
    assert run_cli(*args) != 0
    assert "already holds a run" in capsys.readouterr().err
    assert (out / "metrics.json").read_text() == stamp
    assert run_cli(*args, "--overwrite") == 0


def test_missing_values_with_mask(tmp_path, csv):
    lines = csv.read_text().splitlines()
    lines[5] = ",".join(lines[5].split(",")[:-1] + [""])
    path = tmp_path / "holes.csv"
    path.write_text("\n".join(lines) + "\n")
    out = tmp_path / "run"
    assert run_cli("fit", "fa", "--data", path, "--latent-dim", 2, "--out", out, "--missing", "mask",
                   "--optimizer", "lbfgs", "--quiet") == 0
    metrics = json.loads((out / "metrics.json").read_text())
    x = np.genfromtxt(path, delimiter=",", skip_header=1)[:, 1:]
    assert np.isnan(x).sum() == 1
    assert metrics["log_likelihood"] == pytest.approx(fa_log_likelihood_by_hand(out, x) / len(x), rel=1e-9)


def test_missing_values_are_fitted_by_em_by_default(tmp_path, csv):
    x = np.genfromtxt(csv, delimiter=",", skip_header=1)[:, 1:]
    x[np.random.default_rng(1).random(x.shape) < 0.2] = np.nan
    path = tmp_path / "holes.csv"
    np.savetxt(path, x[~np.isnan(x).all(1)], delimiter=",", header="a,b,c,d,e", comments="", fmt="%.6f")
    x = np.genfromtxt(path, delimiter=",", skip_header=1)
    runs = {}
    for optimizer in ("em", "lbfgs"):
        out = runs[optimizer] = tmp_path / optimizer
        chosen = () if optimizer == "em" else ("--optimizer", "lbfgs")
        assert run_cli("fit", "fa", "--data", path, "--latent-dim", 2, "--out", out, "--missing", "mask",
                       *chosen, "--quiet") == 0
    metrics = json.loads((runs["em"] / "metrics.json").read_text())
    assert metrics["optimizer"] == "em" and metrics["converged"]
    assert json.loads((runs["em"] / "config.json").read_text())["optimizer"] == "em"
    assert metrics["log_likelihood"] == pytest.approx(fa_log_likelihood_by_hand(runs["em"], x) / len(x), rel=1e-9)
    by_lbfgs = json.loads((runs["lbfgs"] / "metrics.json").read_text())["log_likelihood"]
    assert metrics["log_likelihood"] == pytest.approx(by_lbfgs, abs=1e-3)


def fa_log_likelihood_by_hand(run, x):
    """sum_i log N(x_i,o; mu_o, (Lambda Lambda^T + Psi)_oo) over each row's observed coordinates o."""
    model = load_run(run).model
    mu, loadings = model.loc.detach().numpy(), model.loadings.detach().numpy()
    cov = loadings @ loadings.T + np.diag(model.noise_variance.detach().numpy())
    total = 0.0
    for row in x:
        seen = ~np.isnan(row)
        total += multivariate_normal(mu[seen], cov[np.ix_(seen, seen)]).logpdf(row[seen])
    return total


def test_console_script_and_list():
    done = subprocess.run([sys.executable, "-m", "dlvm.experiments.cli", "list"], capture_output=True, text=True)
    assert done.returncode == 0
    for word in ("fa", "ppca", "exact", "amortized", "trace", "tracegraph", "sp500"):
        assert word in done.stdout
    done = subprocess.run([sys.executable, "-m", "dlvm.experiments.cli", "fit", "fa", "--data", "/nonexistent.csv",
                           "--out", "/tmp/never"], capture_output=True, text=True)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "Traceback" not in done.stderr


def reference_log_likelihood(model, series):
    x = series[:, None]
    if model == "gmm":
        return GaussianMixture(2, n_init=5, tol=1e-10, max_iter=2000, random_state=0).fit(x).score(x)
    fits = [GaussianHMM(2, n_iter=2000, tol=1e-10, random_state=seed).fit(x) for seed in range(5)]
    return max(f.score(x) for f in fits) / len(x)


def test_gmm_and_hmm_fit_then_regimes(tmp_path, capsys):
    rng = np.random.default_rng(1)
    calm, wild = rng.normal(0, 0.5, 150), rng.normal(0, 3.0, 50)
    series = np.concatenate([calm[:75], wild, calm[75:]])
    path = tmp_path / "r.csv"
    with open(path, "w") as f:
        f.write("Date,ret\n")
        for day, value in zip(np.arange("2020-01-01", "2020-07-19", dtype="datetime64[D]"), series):
            f.write(f"{day},{value:.6f}\n")
    for model, flag in (("gmm", "--components"), ("hmm", "--states")):
        out = tmp_path / model
        assert run_cli("fit", model, "--data", path, flag, 2, "--optimizer", "lbfgs", "--out", out, "--quiet") == 0
        metrics = json.loads((out / "metrics.json").read_text())
        assert metrics["n_observations"] == 200
        # the maximum likelihood per day reached by scikit-learn's / hmmlearn's EM from several starts
        assert metrics["log_likelihood"] == pytest.approx(reference_log_likelihood(model, series), abs=2e-3)
        assert run_cli("regimes", out, "--out", tmp_path / f"{model}.csv") == 0
        import pandas as pd

        table = pd.read_csv(tmp_path / f"{model}.csv", index_col="Date")
        assert len(table) == 200 and {"regime", "p_0", "p_1"} <= set(table.columns)
        # the wild stretch is the high-volatility regime: all of it for the HMM, most for the GMM,
        # which classifies each day alone (a wild day near 0 looks calm)
        assert table["regime"].iloc[80:120].mean() > (0.8 if model == "hmm" else 0.5)
        assert table["regime"].iloc[:60].mean() < 0.2


def test_regimes_of_a_model_without_regimes(tmp_path, csv, capsys):
    out = tmp_path / "fa"
    run_cli("fit", "fa", "--data", csv, "--latent-dim", 2, "--out", out, "--optimizer", "lbfgs", "--quiet")
    assert run_cli("regimes", out, "--out", tmp_path / "r.csv") != 0
    assert "has no regimes" in capsys.readouterr().err


def test_compare_and_diagnose_commands(tmp_path, csv, capsys):
    assert run_cli("compare", "fa", "--data", csv, "--out", tmp_path / "cmp", "--elbos", "trace,meanfield",
                   "--steps", 10, "--draws", 5, "--latent-dim", 2) == 0
    assert {"gradients.csv", "curves.csv", "gap.csv"} <= {p.name for p in (tmp_path / "cmp").iterdir()}
    out = tmp_path / "run"
    run_cli("fit", "fa", "--data", csv, "--latent-dim", 2, "--guide", "amortized", "--epochs", 5, "--out", out, "--quiet")
    capsys.readouterr()
    assert run_cli("diagnose", out) == 0
    summary = json.loads(capsys.readouterr().out)
    assert 0 <= summary["khat_share_above_threshold"] <= 1
    assert (out / "diagnostics" / "psis_khat.csv").exists()
    assert run_cli("diagnose", out, "--mcmc", "--overwrite") != 0  # ML globals: nothing to sample
    assert "needs a Bayesian model" in capsys.readouterr().err
