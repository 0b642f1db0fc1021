"""The battery every registered model x guide pair passes: fit, evaluate, sample, save, load."""
import numpy as np
import pytest
import torch

from dlvm.experiments.runs.folders import build_pair
from dlvm.guides import default_elbo
from dlvm.inference import evaluate, fit
from dlvm.models import MODELS
from tests.conftest import cuda

PAIRS = [(name, guide) for name, spec in MODELS.items() for guide in spec.guides]


def example(name, rows=24, seed=0):
    spec = MODELS[name]
    config = {"model": name, "model_options": dict(spec.example_options), "guide": None,
              "guide_options": {}, "event_shape": list(spec.example_shape), "dtype": spec.dtype}
    x = np.random.default_rng(seed).random((rows, *spec.example_shape))
    return config, x


def built(name, guide, device="cpu"):
    config, x = example(name)
    config["guide"] = guide
    torch.manual_seed(0)
    model, trained, q = build_pair(config)
    return config, x, model, trained, q


@pytest.mark.parametrize("name,guide", PAIRS)
def test_fit_evaluate_sample_save_load(name, guide, tmp_path):
    config, x, model, trained, q = built(name, guide)
    result = fit(trained, q, x, elbo=default_elbo(guide), epochs=2, batch_size=12, progress=False)
    assert np.isfinite(result.history["elbo"]).all()
    scores = evaluate(trained, q, x, num_samples=3)
    assert torch.isfinite(scores.elbo).all() and scores.elbo.shape == (len(x),)
    assert (scores.iwae >= scores.elbo - 1e-6).all()
    if scores.log_likelihood is not None:  # ELBO <= log p(x) (the mean of a bound over rows)
        # up to the Monte Carlo error of the estimate (a guide close to the posterior can draw
        # above the bound; an exact guide has none)
        error = (scores.elbo - scores.log_likelihood).std() / len(x) ** 0.5
        assert scores.elbo.mean() <= scores.log_likelihood.mean() + 1e-6 + 4 * error
    if hasattr(model, "sample"):
        draws = model.sample(5)  # 5 rows (5 time steps for an HMM)
        assert 5 in draws.shape[:2] and draws.shape[-1] == x.shape[-1]
    torch.save({"model": trained.state_dict(), "guide": q.state_dict()}, tmp_path / "state.pt")
    state = torch.load(tmp_path / "state.pt", weights_only=True)
    _, trained2, q2 = build_pair(config)
    trained2.load_state_dict(state["model"])
    q2.load_state_dict(state["guide"])
    for a, b in zip(trained.state_dict().values(), trained2.state_dict().values()):
        assert torch.equal(a, b)


@cuda
@pytest.mark.parametrize("name,guide", PAIRS)
def test_forward_backward_on_cuda(name, guide):
    config, x, model, trained, q = built(name, guide)
    result = fit(trained, q, x, elbo=default_elbo(guide), epochs=1, device="cuda", progress=False)
    assert next(model.parameters()).is_cuda
    assert np.isfinite(result.history["elbo"]).all()
