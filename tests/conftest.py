import pyro
import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed():
    pyro.set_rng_seed(0)
    yield


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")
