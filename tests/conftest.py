"""Test-wide settings: one torch thread (faster on small shared machines) and fixed seeds."""
import numpy as np
import pyro
import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread_and_seeded():
    torch.set_num_threads(1)
    pyro.set_rng_seed(0)
    np.random.seed(0)
    yield
