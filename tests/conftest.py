import pyro
import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread_and_seed():
    torch.set_num_threads(1)
    pyro.set_rng_seed(0)
    yield


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")
