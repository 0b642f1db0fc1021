"""VAE: bounds on held-out data, training, sampling, and the two gradient estimators (§6.4.3)."""
import numpy as np
import pyro
import pyro.poutine as poutine
import pytest
import torch

from dlvm.experiments.data.sets import digits
from dlvm.guides import pair
from dlvm.inference import evaluate, fit, make_elbo
from dlvm.models import MODELS, VAE, build_model


@pytest.fixture(scope="module")
def binary_digits():
    images, labels = digits()
    x = (images.reshape(len(images), 64) > 0.5).astype(np.float32)
    return x[:1200], x[1200:1500]


@pytest.fixture(scope="module")
def trained(binary_digits):
    torch.set_num_threads(1)
    torch.manual_seed(0)  # the networks' starting weights: the same whichever test runs first
    pyro.set_rng_seed(0)
    train, _ = binary_digits
    model, guide = pair(VAE((64,), 2, (64,), "bernoulli"), "amortized", (64,), hidden=(64,))
    fit(model, guide, train, epochs=15, batch_size=100, lr=5e-3, progress=False, seed=0)
    return model, guide


def test_iwae_bounds_the_elbo_and_grows_with_k(trained, binary_digits):
    model, guide = trained
    _, test = binary_digits
    bounds = {}
    for k in (1, 10, 100):
        pyro.set_rng_seed(k)
        bounds[k] = evaluate(model, guide, test, num_samples=k)
    for k, ev in bounds.items():
        assert (ev.iwae >= ev.elbo - 1e-4).all()  # log-mean-exp >= mean, row by row
    means = [float(bounds[k].iwae.mean()) for k in (1, 10, 100)]
    # E IWAE-K grows with K; from 10 to 100 by about a hundredth here, within Monte-Carlo noise
    assert means[0] < means[1] and means[0] < means[2] and means[1] < means[2] + 0.02
    assert means[2] - float(bounds[100].elbo.mean()) > 0.05


def log_weights_by_hand(model, guide, x):
    """log p(x_i, z) - log q(z | x_i) per row for one z ~ q, from Pyro traces of the two."""
    guide_trace = poutine.trace(guide).get_trace(x)
    model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(x)

    def per_row(trace):
        return sum(site["fn"].log_prob(site["value"]) for site in trace.nodes.values()
                   if site["type"] == "sample" and type(site["fn"]).__name__ != "_Subsample")

    return per_row(model_trace) - per_row(guide_trace)


def test_iwae_matches_an_estimate_by_hand(trained, binary_digits):
    model, guide = trained
    x = torch.as_tensor(binary_digits[1][:100])
    pyro.set_rng_seed(1)
    with torch.no_grad():
        weights = torch.stack([log_weights_by_hand(model, guide, x) for _ in range(100)])
        by_hand = (weights.logsumexp(0) - np.log(100)).mean().item()
        elbo_by_hand = weights.mean().item()
    result = evaluate(model, guide, x, num_samples=100)
    # two independent sets of 100 draws: the means over 100 rows agree to Monte Carlo error
    # (about 0.015 nats), well below the IWAE-100 - ELBO gap the check must tell apart
    assert by_hand - elbo_by_hand > 0.08
    assert float(result.iwae.mean()) == pytest.approx(by_hand, abs=0.04)
    assert float(result.elbo.mean()) == pytest.approx(elbo_by_hand, abs=0.04)


def test_trained_beats_untrained_by_a_wide_margin(trained, binary_digits):
    _, test = binary_digits
    model, guide = trained
    fresh, fresh_guide = pair(VAE((64,), 2, (64,), "bernoulli"), "amortized", (64,), hidden=(64,))
    before = evaluate(fresh, fresh_guide, test, num_samples=20).summary()["elbo"]
    after = evaluate(model, guide, test, num_samples=20).summary()["elbo"]
    assert after > before + 10  # nats per image; 64 fair coins would be 44.4


def test_samples_have_the_data_shape_and_range(trained, binary_digits):
    model, guide = trained
    draws = model.sample(50)
    assert draws.shape == (50, 64) and set(draws.unique().tolist()) <= {0.0, 1.0}
    means = model.sample(50, noise=False)
    assert means.min() >= 0 and means.max() <= 1
    x = torch.as_tensor(binary_digits[1][:7])
    assert model.reconstruct(x, guide).shape == (7, 64)
    assert model.traverse(1, torch.linspace(-2, 2, 5)).shape == (5, 64)
    assert model.grid(4).shape == (4, 4, 64)


@pytest.mark.parametrize("likelihood", ["gaussian", "gaussian-fixed", "bernoulli"])
def test_images_keep_their_shape(likelihood):
    x = torch.rand(30, 4, 5)
    model, guide = pair(build_model("vae", (4, 5), {"likelihood": likelihood, "latent_dim": 3}), "amortized", (4, 5))
    fit(model, guide, x, epochs=2, batch_size=10, progress=False)
    assert model.sample(6).shape == (6, 4, 5)
    assert model.reconstruct(x[:2], guide).shape == (2, 4, 5)


def test_gaussian_decoder_learns_mean_and_variance():
    """On N(mu, diag s^2) data the decoder's output layer recovers both (§6.5)."""
    torch.manual_seed(1)
    scale = torch.tensor([0.5, 2.0, 1.0])
    x = torch.tensor([1.0, -2.0, 0.0]) + scale * torch.randn(2000, 3)
    model, guide = pair(VAE((3,), 1, (8,), "gaussian"), "amortized", (3,), hidden=(8,))
    fit(model, guide, x, epochs=30, batch_size=200, lr=1e-2, progress=False)
    px = model.likelihood(torch.zeros(1, 1))
    torch.testing.assert_close(px.mean[0], x.mean(0), atol=0.15, rtol=0)
    torch.testing.assert_close(px.stddev[0], scale, atol=0.15, rtol=0.1)


def test_registry_builds_the_vae():
    spec = MODELS["vae"]
    assert spec.guides[0] == "amortized"
    model = spec.build((64,), {"latent_dim": 5, "hidden": (32, 16), "likelihood": "bernoulli"})
    assert model.latent_dim == 5 and model.emission.likelihood == "bernoulli"


def _guide_gradients(model, guide, elbo, x, draws, names):
    estimator = make_elbo(elbo)
    params = dict(guide.named_parameters())
    out = []
    for _ in range(draws):
        for p in params.values():
            p.grad = None
        estimator.loss_and_grads(model, guide, x, None)
        out.append(torch.cat([params[n].grad.flatten() for n in names]))
    return torch.stack(out)


def test_reparameterized_and_score_function_gradients_agree_in_expectation():
    """Both estimate the same gradient of the ELBO (eq. 6.14 vs 6.15); REINFORCE is noisier."""
    torch.manual_seed(3)
    x = (torch.rand(6, 5) < 0.4).float()
    model, guide = pair(VAE((5,), 2, (8,), "bernoulli"), "amortized", (5,), hidden=(8,))
    _, sf_guide = pair(model, "amortized", (5,), hidden=(8,), reparameterized=False)
    sf_guide.load_state_dict(guide.state_dict())
    names = ["loc_head.bias", "scale_head.bias"]
    reparam = _guide_gradients(model, guide, "trace", x, 200, names)
    score = _guide_gradients(model, sf_guide, "tracegraph", x, 1000, names)
    diff = reparam.mean(0) - score.mean(0)
    se = (reparam.var(0) / len(reparam) + score.var(0) / len(score)).sqrt()
    assert (diff.abs() < 4.5 * se).all(), (diff, se)
    assert (score.var(0) > reparam.var(0)).all()
    # the agreement is not vacuous: the gradient is clearly non-zero
    assert (reparam.mean(0).abs() > 4.5 * reparam.std(0) / len(reparam) ** 0.5).any()
