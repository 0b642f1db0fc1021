"""Gradient estimators against analytic gradients and against each other."""
import math

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.nn import PyroModule, PyroParam
from torch.distributions import constraints

from dlvm.guides.baselines import WithBaseline
from dlvm.inference.estimators import (
    ScopedELBO, compare_estimators, make_estimator, parameter_groups, training_curves,
)
from dlvm.models import LatentVariableModel
from dlvm.models.base import data_plate

SIGMA = 0.5  # observation noise of the conjugate model
LOG_2PI = math.log(2 * math.pi)


class NormalNormal(LatentVariableModel):
    """z_i ~ N(mu0, 1), x_i | z_i ~ N(z_i, SIGMA^2): conjugate, every ELBO term in closed form."""

    exact_marginal = True

    def __init__(self):
        super().__init__()
        self.prior_loc = PyroParam(torch.tensor(0.3, dtype=torch.float64))

    def model(self, x, mask=None, size=None):
        with self.data_plate(x, size):
            z = pyro.sample("z", dist.Normal(self.prior_loc, 1.0))
            return pyro.sample("x", dist.Normal(z.unsqueeze(-1), SIGMA).to_event(1), obs=x)

    def log_marginal(self, x, mask=None):
        return dist.Normal(self.prior_loc, math.sqrt(1 + SIGMA**2)).log_prob(x[:, 0])


class LinearGuide(PyroModule):
    """q(z_i | x_i) = N(a x_i + b, s^2), reparameterised or not."""

    def __init__(self, reparameterized=True):
        super().__init__()
        self.a = PyroParam(torch.tensor(0.5, dtype=torch.float64))
        self.b = PyroParam(torch.tensor(-0.2, dtype=torch.float64))
        self.s = PyroParam(torch.tensor(0.7, dtype=torch.float64), constraint=constraints.positive)
        self.reparameterized = reparameterized

    def forward(self, x, mask=None, size=None):
        q = dist.Normal(self.a * x[:, 0] + self.b, self.s)
        if not self.reparameterized:
            q = q.has_rsample_(False)
        with data_plate(x, size):
            return pyro.sample("z", q)


def closed_form_elbo(model, guide, x):
    """Sum over rows of E_q[log p(z) + log p(x|z)] + H[q] for the conjugate pair."""
    m = guide.a * x[:, 0] + guide.b
    s2 = guide.s**2
    prior = -0.5 * LOG_2PI - 0.5 * ((m - model.prior_loc) ** 2 + s2)
    likelihood = -0.5 * LOG_2PI - math.log(SIGMA) - ((x[:, 0] - m) ** 2 + s2) / (2 * SIGMA**2)
    entropy = 0.5 * (LOG_2PI + 1) + torch.log(guide.s)
    return (prior + likelihood + entropy).sum()


def analytic_gradient(model, guide, x):
    """Gradient of the negative closed-form ELBO per parameter group, by autograd."""
    groups = parameter_groups(model, guide)
    params = [p for ps in groups.values() for p in ps]
    grads = torch.autograd.grad(-closed_form_elbo(model, guide, x), params)
    out, i = {}, 0
    for g, ps in groups.items():
        out[g] = torch.cat([grads[i + j].reshape(-1) for j in range(len(ps))]).numpy()
        i += len(ps)
    return out


def test_every_estimator_is_unbiased_on_the_conjugate_model():
    x = torch.randn(12, 1, dtype=torch.float64) * 1.2 + 0.5
    model = NormalNormal()
    guides = {
        "reparam": LinearGuide(True),
        "score": LinearGuide(False),
        "score+decaying": WithBaseline(LinearGuide(False), (1,), "decaying"),
        "score+neural": WithBaseline(LinearGuide(False), (1,), "neural").double(),
    }
    pairs = [("reparam", e) for e in ("trace", "tracegraph", "traceenum", "meanfield", "renyi:0", "renyi:0.5")]
    pairs += [("score", "trace"), ("score", "tracegraph"),
              ("score+decaying", "tracegraph"), ("score+neural", "tracegraph")]
    table = compare_estimators(model, guides, x, pairs=pairs, num_draws=150, warmup=20)
    assert set(zip(table.guide, table.elbo)) == set(pairs)
    for label, guide in guides.items():
        inner = getattr(guide, "guide", guide)
        truth = analytic_gradient(model, inner, x)
        for _, row in table[(table.guide == label) & (table.group != "all")].iterrows():
            expected = truth[row.group]
            tolerance = 4.5 * row["sem"] + 1e-8
            assert np.all(np.abs(row["mean"] - expected) <= tolerance), (label, row.elbo, row.group)
    # reparameterised gradients have a far smaller variance than score-function ones
    var = table[table.group == "all"].set_index(["guide", "elbo"])["variance"]
    assert var["reparam", "trace"] < var["score", "trace"] / 5
    assert var["reparam", "meanfield"] <= var["reparam", "trace"] * 1.5
    assert (table.seconds_per_step > 0).all()


class TwoComponentMixture(LatentVariableModel):
    """z_i ~ Categorical(0.4, 0.6), x_i | z_i = k ~ N(mu_k, 1) (2-D), enumerable z."""

    latent_kind = "categorical"
    can_sample = True

    def __init__(self):
        super().__init__()
        self.means = PyroParam(torch.tensor([[-1.5, 0.0], [1.5, 0.5]]))
        self.register_buffer("weights", torch.tensor([0.4, 0.6]))

    def model(self, x, mask=None, size=None):
        with self.data_plate(x, size):
            z = pyro.sample("z", dist.Categorical(self.weights), infer={"enumerate": "parallel"})
            return pyro.sample("x", dist.Normal(self.means[z], 1.0).to_event(1), obs=x)

    def sample(self, n):
        z = torch.multinomial(self.weights, n, replacement=True)
        return self.means[z] + torch.randn(n, 2)


class SoftmaxGuide(PyroModule):
    """q(z_i | x_i) = softmax(W x_i + c): a linear categorical guide."""

    def __init__(self):
        super().__init__()
        self.net = torch.nn.Linear(2, 2)

    def forward(self, x, mask=None, size=None):
        with data_plate(x, size):
            return pyro.sample("z", dist.Categorical(logits=self.net(x)))


class EmptyGuide(PyroModule):
    def forward(self, x, mask=None, size=None):
        return None


@pytest.fixture
def mixture_problem():
    model = TwoComponentMixture()
    with torch.no_grad():
        x = model.sample(64)
    return model, x


def test_a_baseline_lowers_the_score_function_variance(mixture_problem):
    model, x = mixture_problem
    guides = {b: WithBaseline(SoftmaxGuide(), (2,), b) for b in ("none", "decaying", "neural")}
    for g in guides.values():  # the same q for all three
        g.guide.net.load_state_dict(guides["none"].guide.net.state_dict())
    table = compare_estimators(model, guides, x, elbos=["tracegraph"], num_draws=100, warmup=60)
    var = table[table.group == "guide.net"].set_index("guide")["variance"]
    assert var["decaying"] < var["none"] / 2
    assert var["neural"] < var["none"]


def test_estimator_ranking_on_a_mixture(mixture_problem):
    """Variance of the whole gradient: enumeration (none) < tracegraph + baseline < trace."""
    model, x = mixture_problem
    guides = {"enum": EmptyGuide(), "amortized": WithBaseline(SoftmaxGuide(), (2,), "decaying")}
    pairs = [("enum", "traceenum"), ("amortized", "tracegraph"), ("amortized", "trace")]
    table = compare_estimators(model, guides, x, pairs=pairs, num_draws=100, warmup=50)
    var = table[table.group == "all"].set_index("elbo")["variance"]
    assert var["traceenum"] < var["tracegraph"] < var["trace"]
    assert var["traceenum"] < 1e-12


def test_decaying_baselines_stay_private(mixture_problem):
    """Two estimators on sites of the same name keep separate running averages, and nothing is
    left in the global parameter store."""
    model, x = mixture_problem
    guide = WithBaseline(SoftmaxGuide(), (2,), "decaying")
    first, second = make_estimator("tracegraph", model), make_estimator("tracegraph", model)
    pyro.clear_param_store()
    first.loss_and_grads(model, guide, x)
    second.loss_and_grads(model, guide, x[:10])
    assert len(pyro.get_param_store()) == 0
    (name,) = first.state["params"]
    assert "baseline" in name
    assert first.state["params"][name].shape == (64,) and second.state["params"][name].shape == (10,)
    assert isinstance(first, ScopedELBO)


def test_training_curves_track_the_exact_evidence():
    x = torch.randn(30, 1, dtype=torch.float64) + 0.5
    model, guide = NormalNormal(), LinearGuide(True)
    curves = training_curves(model, guide, x, "trace", steps=40, eval_every=20, lr=0.05, num_samples=50)
    assert list(curves.step) == [0, 20, 40]
    assert (curves.log_likelihood >= curves.iwae - 1e-2).all()
    assert (curves.iwae >= curves.elbo - 1e-6).all()
    assert curves.gap.iloc[-1] < curves.gap.iloc[0]
    assert curves.seconds.is_monotonic_increasing


def test_bad_estimator_names():
    model = NormalNormal()
    with pytest.raises(ValueError, match="unknown ELBO"):
        make_estimator("nope", model)
    with pytest.raises(ValueError, match="renyi alpha"):
        make_estimator("renyi:x", model)
    with pytest.raises(ValueError, match="unknown guide"):
        compare_estimators(model, {"a": LinearGuide()}, torch.zeros(3, 1, dtype=torch.float64),
                           pairs=[("b", "trace")])
