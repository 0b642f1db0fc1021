import gc
import os
import tempfile

import pyro
import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread_and_seed():
    """One thread, seed 0 and an empty Pyro parameter store (what a test leaves there, such as the
    running average of a decaying baseline, must not reach the next test)."""
    torch.set_num_threads(1)
    pyro.set_rng_seed(0)
    pyro.clear_param_store()
    yield


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")


@pytest.fixture(scope="session", autouse=True)
def _own_temp_dir(tmp_path_factory):
    """The system temp directory of this session (also for the CLI run in subprocesses): at the
    end it must hold nothing dlvm left behind (the CSV-to-npy conversions of streaming)."""
    folder = tmp_path_factory.mktemp("system-temp")
    saved = tempfile.tempdir, os.environ.get("TMPDIR")
    tempfile.tempdir, os.environ["TMPDIR"] = str(folder), str(folder)
    yield folder
    gc.collect()
    tempfile.tempdir = saved[0]
    if saved[1] is None:
        os.environ.pop("TMPDIR", None)
    else:
        os.environ["TMPDIR"] = saved[1]
    left = sorted(p.name for p in folder.iterdir() if p.name.startswith("dlvm-"))
    assert not left, f"temporary files left behind: {left}"
