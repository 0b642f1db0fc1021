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


#: runs the CLI with save_checkpoint wrapped: once the checkpoint of epoch 3 is on disk it writes
#: the file argv[1] and waits there, so the test kills a run that is certainly mid-fit
PAUSED_AFTER_EPOCH_3 = """
import sys, threading
from pathlib import Path
import dlvm.inference.hooks as engine
from dlvm.experiments.cli import main

signal_file, saved = Path(sys.argv[1]), engine.save_checkpoint

def save_then_pause(path, payload):
    saved(path, payload)
    if payload["epoch"] >= 3:
        signal_file.write_text("saved")
        threading.Event().wait()

engine.save_checkpoint = save_then_pause
sys.exit(main(sys.argv[2:]))
"""


def test_sigkill_then_resume_matches_an_uninterrupted_run(tmp_path, csv):
    straight = tmp_path / "straight"
    assert main(FIT + ["--data", str(csv), "--out", str(straight)]) == 0
    killed = tmp_path / "killed"
    saved = tmp_path / "saved-epoch-3"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", PAUSED_AFTER_EPOCH_3, str(saved), *FIT, "--data", str(csv),
                             "--out", str(killed)], env=env)
    try:
        deadline = time.time() + 300
        while not saved.exists() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.05)  # the run is paused once the file exists: no race with its progress
        assert saved.exists(), f"the run ended ({proc.poll()}) before it saved epoch 3"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    checkpoint = tmp_path / "killed.partial" / "checkpoint.pt"
    assert not killed.exists() and torch.load(checkpoint, weights_only=True)["epoch"] == 3
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
