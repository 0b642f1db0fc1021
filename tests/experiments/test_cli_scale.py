"""``torchrun ... dlvm fit --distributed``: two CPU processes write one run folder that matches
the single-process fit."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dlvm.experiments.cli import main


@pytest.fixture
def npy(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "data.npy"
    np.save(path, rng.normal(size=(150, 2)) @ rng.normal(size=(2, 5)) + rng.normal(size=(150, 5)))
    return path


def fit_args(npy, out):
    # Adam on minibatches in every variant (in memory alone, FA's default would be closed-form EM)
    return ["fit", "fa", "--guide", "exact", "--optimizer", "adam", "--data", str(npy), "--latent-dim", "2",
            "--epochs", "4", "--batch-size", "40", "--out", str(out), "--quiet"]


def test_torchrun_fit_matches_one_process(tmp_path, npy):
    torchrun = Path(sys.executable).with_name("torchrun")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [str(torchrun), "--standalone", "--nproc_per_node", "2", "-m", "dlvm.experiments.cli",
         *fit_args(npy, tmp_path / "ddp"), "--distributed"],
        capture_output=True, text=True, timeout=120, env=env,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert sorted(p.name for p in (tmp_path / "ddp").iterdir()) == [".dlvm-run",
        "checkpoint.pt", "config.json", "history.csv", "metrics.json"]
    assert main(fit_args(npy, tmp_path / "one")) == 0
    ddp = pd.read_csv(tmp_path / "ddp" / "history.csv")
    one = pd.read_csv(tmp_path / "one" / "history.csv")
    np.testing.assert_allclose(ddp["elbo"], one["elbo"], rtol=1e-9)
    metrics = json.loads((tmp_path / "ddp" / "metrics.json").read_text())
    assert metrics["processes"] == 2
    assert metrics["log_likelihood"] == pytest.approx(json.loads((tmp_path / "one" / "metrics.json").read_text())["log_likelihood"])


def test_distributed_without_torchrun_is_one_line(tmp_path, npy, capsys, monkeypatch):
    for key in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(key, raising=False)
    assert main([*fit_args(npy, tmp_path / "x"), "--distributed"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--distributed needs the process group set up by torchrun" in err
    assert not (tmp_path / "x").exists()


def test_streamed_fit_equals_in_memory_fit_and_evaluates(tmp_path, npy, capsys):
    x = np.load(npy)
    csv = tmp_path / "data.csv"
    with open(csv, "w") as f:
        f.write("date,a,b,c,d,e\n")
        for i, row in enumerate(x):
            f.write(f"2020-01-{i % 28 + 1:02d}," + ",".join(repr(float(v)) for v in row) + "\n")
    assert main(fit_args(npy, tmp_path / "one")) == 0
    one = pd.read_csv(tmp_path / "one" / "history.csv")
    for data, name in ((npy, "s1"), (csv, "s2")):
        assert main([*fit_args(data, tmp_path / name), "--stream"]) == 0
        streamed = pd.read_csv(tmp_path / name / "history.csv")
        np.testing.assert_allclose(streamed["elbo"], one["elbo"], rtol=1e-12)
    capsys.readouterr()
    assert main(["evaluate", str(tmp_path / "s2"), "--iwae-samples", "2"]) == 0
    scores = json.loads(capsys.readouterr().out)
    metrics = json.loads((tmp_path / "one" / "metrics.json").read_text())
    assert scores["n_rows"] == 150 and scores["log_likelihood"] == pytest.approx(metrics["log_likelihood"])


def test_stream_refuses_windows(tmp_path, npy, capsys):
    assert main([*fit_args(npy, tmp_path / "w"), "--stream", "--window", "5"]) == 2
    assert "--stream reads the rows" in capsys.readouterr().err
