"""A run knows what it was made from, and input says what it is: config.json, --resume, columns
by name, CSV dialects, saved indexes, dates, quoted sample headers, exact-guide diagnostics."""
import hashlib
import json

import numpy as np
import pandas as pd
import pytest
import torch

from dlvm.experiments.cli import main
from dlvm.experiments.data import load_table, read_data
from dlvm.experiments.reporting.timegan_metrics import discriminative_scores

FRAME = pd.DataFrame(np.random.default_rng(2).normal(size=(50, 4)), columns=["a", "b", "c", "d,e"])
FIT = ["--latent-dim", "1", "--optimizer", "lbfgs", "--epochs", "5", "--iwae-samples", "2", "--quiet"]


@pytest.fixture
def data(tmp_path):
    path = tmp_path / "data.csv"
    FRAME.to_csv(path, index=False)
    return path


def fit(data, out, *extra):
    return main(["fit", "fa", "--data", str(data), "--out", str(out), *FIT, *extra])


def evaluate(capsys, *argv):
    capsys.readouterr()
    assert main(["evaluate", *map(str, argv), "--iwae-samples", "2"]) == 0
    return json.loads(capsys.readouterr().out)


def test_config_records_every_setting_and_the_data(tmp_path, data):
    out = tmp_path / "run"
    assert fit(data, out, "--clip-norm", "5", "--early-stopping", "3", "--checkpoint-every", "2") == 0
    config = json.loads((out / "config.json").read_text())
    assert config["clip_norm"] == 5.0 and config["early_stopping"] == 3 and config["checkpoint_every"] == 2.0
    assert config["iwae_samples"] == 2 and config["lr_decay"] == 1.0 and config["optimizer"] == "lbfgs"
    assert config["data"] == str(data.resolve())
    assert config["data_file"] == {"path": str(data.resolve()), "size": data.stat().st_size,
                                   "sha256": hashlib.sha256(data.read_bytes()).hexdigest()}
    assert config["columns"] == ["a", "b", "c", "d,e"] and config["dtypes"] == ["float64"] * 4


def test_evaluate_works_from_another_directory(tmp_path, data, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert fit("data.csv", "run") == 0
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert evaluate(capsys, "../run")["n_rows"] == 50


def test_columns_in_another_order_are_matched_by_name(tmp_path, data, capsys):
    out = tmp_path / "run"
    assert fit(data, out) == 0
    shuffled = tmp_path / "shuffled.csv"
    FRAME[["c", "d,e", "a", "b"]].to_csv(shuffled, index=False)
    assert evaluate(capsys, out, "--data", shuffled) == evaluate(capsys, out, "--data", data)
    table = read_data(shuffled, columns=["a", "b", "c", "d,e"])
    np.testing.assert_array_equal(table.x, FRAME.to_numpy())


def test_resume_refuses_other_settings_and_allows_a_new_learning_rate(tmp_path, data, capsys):
    out = tmp_path / "run"
    assert main(["fit", "fa", "--data", str(data), "--out", str(out), "--latent-dim", "1", "--guide", "amortized",
                 "--epochs", "4", "--iwae-samples", "2", "--lr", "0.01", "--quiet"]) == 0
    out.rename(tmp_path / "run.partial")  # a finished run's folder stands in for an interrupted one
    base = ["fit", "fa", "--data", str(data), "--out", str(out), "--latent-dim", "1", "--guide", "amortized",
            "--epochs", "6", "--iwae-samples", "2", "--resume", "--quiet"]
    capsys.readouterr()
    assert main(base + ["--lr", "0.02"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith("was fitted with --lr 0.01, not 0.02 (pass --allow-new-lr to continue with the new one)"), err
    assert main(base + ["--lr", "0.01", "--seed", "4"]) == 2
    assert "--seed 0, not 4" in capsys.readouterr().err
    assert main(base + ["--lr", "0.02", "--allow-new-lr"]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["lr"] == 0.02 and config["lr_changes"] == [{"epoch": 4, "from": 0.01}]
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert state["epoch"] == 6
    assert [g["lr"] for g in state["optimizer"]["param_groups"]] == [0.02]


def test_csv_dialects_are_detected(tmp_path):
    expected = FRAME.to_numpy().round(6)
    for sep, decimal in ((";", ","), ("\t", "."), ("|", "."), (";", ".")):
        path = tmp_path / "dialect.csv"
        FRAME.round(6).to_csv(path, sep=sep, decimal=decimal, index=False)
        table = load_table(path)
        assert table.columns == ["a", "b", "c", "d,e"], (sep, decimal)
        np.testing.assert_allclose(table.x, expected, atol=1e-12)


def test_a_saved_pandas_index_is_the_index_not_a_feature(tmp_path):
    path = tmp_path / "indexed.csv"
    FRAME.to_csv(path)  # writes the index as an unnamed first column
    table = load_table(path)
    assert table.columns == ["a", "b", "c", "d,e"] and table.x.shape == (50, 4)
    assert list(table.index) == list(range(50))


def test_dates_out_of_order_are_sorted_for_time_series_with_a_note(tmp_path, capsys):
    dates = pd.date_range("2021-01-01", periods=40).strftime("%Y-%m-%d")
    frame = pd.DataFrame({"date": dates, "r": np.random.default_rng(3).normal(size=40)})
    shuffled = frame.sample(frac=1, random_state=1)
    path = tmp_path / "shuffled.csv"
    shuffled.to_csv(path, index=False)
    table = read_data(path, ordered=True)
    np.testing.assert_array_equal(table.x[:, 0], frame["r"].to_numpy())
    assert "rows sorted by 'date'" in capsys.readouterr().err
    np.testing.assert_array_equal(read_data(path).x[:, 0], shuffled["r"].to_numpy())  # other models: file order
    out = tmp_path / "hmm"
    assert main(["fit", "hmm", "--data", str(path), "--out", str(out), "--optimizer", "lbfgs", "--epochs", "3",
                 "--iwae-samples", "2", "--quiet"]) == 0
    assert main(["regimes", str(out), "--out", str(tmp_path / "regimes.csv")]) == 0
    written = pd.read_csv(tmp_path / "regimes.csv")
    assert list(written["date"]) == list(dates)


def test_sample_csv_header_is_quoted(tmp_path, data):
    out = tmp_path / "run"
    assert fit(data, out) == 0
    assert main(["sample", str(out), "-n", "7", "--out", str(tmp_path / "s.csv")]) == 0
    samples = pd.read_csv(tmp_path / "s.csv")
    assert list(samples.columns) == ["a", "b", "c", "d,e"] and samples.shape == (7, 4)


def test_diagnose_an_exact_guide_run(tmp_path, data, capsys):
    out = tmp_path / "run"
    assert fit(data, out) == 0
    capsys.readouterr()
    assert main(["diagnose", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["khat_median"] is None and "exact posterior" in summary["khat_note"]
    assert not (out / "diagnostics" / "psis_khat.csv").exists()
    assert main(["diagnose", str(out), "--overwrite"]) == 0  # a rerun is not blocked


def test_discriminative_accuracy_is_taken_over_equal_numbers_of_windows():
    rng = np.random.default_rng(0)
    real, synthetic = rng.normal(size=(40, 5, 2)), rng.normal(size=(12, 5, 2))
    scores = discriminative_scores(real, synthetic, repeats=4, steps=2)
    # 12 windows of each set, 2 of each in every test split: accuracy in quarters (pooled over
    # 8 real and 2 synthetic test windows it would be in tenths)
    np.testing.assert_allclose(scores * 4, np.round(scores * 4), atol=1e-9)
    with pytest.raises(ValueError, match="at least 10 real and 10 synthetic windows, got 40 and 3"):
        discriminative_scores(real, synthetic[:3], steps=1)
