"""Faults: a killed run resumes to the same result, full disks and determinism."""
import errno
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from dlvm.experiments.cli import main

FIT = ["fit", "fa", "--latent-dim", "2", "--guide", "amortized", "--epochs", "30", "--batch-size", "20",
       "--iwae-samples", "10", "--seed", "3", "--quiet", "--checkpoint-every", "0"]


@pytest.fixture
def csv(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 2)) @ rng.normal(size=(2, 5)) + rng.normal(size=(200, 5))
    path = tmp_path / "data.csv"
    np.savetxt(path, x, delimiter=",", header="a,b,c,d,e", comments="")
    return path


def metrics(folder):
    values = json.loads((folder / "metrics.json").read_text())
    values.pop("fit_seconds")
    return values


def test_sigkill_then_resume_matches_an_uninterrupted_run(tmp_path, csv):
    straight = tmp_path / "straight"
    assert main(FIT + ["--data", str(csv), "--out", str(straight)]) == 0
    killed = tmp_path / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "dlvm.experiments.cli", *FIT, "--data", str(csv),
                             "--out", str(killed)], env=env)
    checkpoint = tmp_path / "killed.partial" / "checkpoint.pt"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if checkpoint.exists() and torch.load(checkpoint, weights_only=True)["epoch"] >= 3:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not killed.exists() and checkpoint.exists()
    assert main(FIT + ["--data", str(csv), "--out", str(killed), "--resume"]) == 0
    assert metrics(killed) == metrics(straight)
    assert not (tmp_path / "killed.partial").exists()


def test_same_seed_gives_identical_metrics(tmp_path, csv):
    for name in ("a", "b"):
        assert main(FIT + ["--data", str(csv), "--out", str(tmp_path / name)]) == 0
    assert metrics(tmp_path / "a") == metrics(tmp_path / "b")


def test_full_disk_is_a_clear_error_and_leaves_no_run(tmp_path, csv, capsys, monkeypatch):
    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp_path / "out"))

    monkeypatch.setattr(torch, "save", no_space)
    code = main(FIT + ["--data", str(csv), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert code != 0 and err.startswith("dlvm: error: No space left on device")
    assert len(err.splitlines()) == 1
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.partial").exists()


def test_output_inside_a_file_is_a_clear_error(tmp_path, csv, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code = main(FIT + ["--data", str(csv), "--out", str(blocker / "run")])
    err = capsys.readouterr().err.strip()
    assert code != 0 and err.startswith("dlvm: error:") and len(err.splitlines()) == 1
