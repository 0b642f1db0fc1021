"""The SVI engine: unbiased minibatches, checkpoints, resume, failures, options."""
import math

import numpy as np
import pyro
import pytest
from sklearn.decomposition import FactorAnalysis as FactorAnalysis_sklearn
import torch
from pyro.nn import PyroModule, PyroParam

from dlvm.guides import ExactGuide, pair
from dlvm.inference import (
    ELBO_NAMES, CheckpointError, NonFiniteLossError, StepSchedule, evaluate, fit, load_checkpoint, make_elbo,
    save_checkpoint,
)
from dlvm.models import FactorAnalysis, Marginalized
from tests.conftest import cuda


def data(n=200, d=6, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 2)) @ rng.normal(size=(2, d)) + rng.normal(size=(n, d))


def test_minibatch_loss_is_an_unbiased_estimate_of_the_full_data_loss():
    x = torch.as_tensor(data())
    model = Marginalized(FactorAnalysis(6, 2).double())
    model.initialize(x)
    elbo = make_elbo("trace")
    full = elbo.loss(model, ExactGuide(), x)
    generator = torch.Generator().manual_seed(0)
    estimates = []
    for _ in range(400):
        index = torch.randperm(200, generator=generator)[:20]
        estimates.append(elbo.loss(model, ExactGuide(), x[index], None, size=200))
    estimates = np.array(estimates)
    stderr = estimates.std() / math.sqrt(len(estimates))
    assert abs(estimates.mean() - full) < 4 * stderr
    assert estimates.std() > 0  # the estimate really is random


def test_history_and_result():
    model = FactorAnalysis(6, 2).double()
    trained, guide = pair(model, "amortized", (6,))
    guide.double()
    result = fit(trained, guide, data(), val_data=data(50, seed=1), epochs=4, batch_size=64, progress=False)
    assert list(result.history.columns) == ["epoch", "elbo", "val_elbo", "seconds"]
    assert result.history["epoch"].tolist() == [1, 2, 3, 4]
    assert result.history["val_elbo"].notna().all()
    assert result.history["seconds"].is_monotonic_increasing


def test_checkpoint_round_trip(tmp_path):
    model = FactorAnalysis(6, 2)
    save_checkpoint(tmp_path / "c.pt", {"model": model.state_dict(), "epoch": 3})
    state = load_checkpoint(tmp_path / "c.pt")
    other = FactorAnalysis(6, 2)
    other.load_state_dict(state["model"])
    assert torch.equal(other.loadings, model.loadings) and state["epoch"] == 3
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]  # no temporary file left


def test_loading_a_pickle_that_is_not_a_checkpoint_fails_cleanly(tmp_path):
    import pickle

    path = tmp_path / "evil.pt"
    path.write_bytes(pickle.dumps({"a": object()}))
    with pytest.raises(CheckpointError, match="not a readable dlvm checkpoint"):
        load_checkpoint(path)
    torch.save({"weights": torch.zeros(2)}, tmp_path / "plain.pt")
    with pytest.raises(CheckpointError, match="not a dlvm checkpoint"):
        load_checkpoint(tmp_path / "plain.pt")
    (tmp_path / "cut.pt").write_bytes((tmp_path / "plain.pt").read_bytes()[:50])
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "cut.pt")


def _amortized_fit(tmp_path, epochs, resume=False, schedule=None, **options):
    """A minibatch fit (4 steps per epoch) whose guide declares ``schedule``."""
    torch.manual_seed(0)
    model = FactorAnalysis(6, 2).double()
    trained, guide = pair(model, "amortized", (6,))
    guide.double()
    guide.step_schedule = schedule
    return fit(trained, guide, data(), epochs=epochs, batch_size=50, seed=7, checkpoint_dir=tmp_path, lr_decay=0.9,
               checkpoint_every=0, resume=resume, progress=False, **options)


def test_resume_reproduces_an_uninterrupted_run(tmp_path):
    straight = _amortized_fit(tmp_path / "a", 6)
    _amortized_fit(tmp_path / "b", 3)  # "killed" after epoch 3
    resumed = _amortized_fit(tmp_path / "b", 6, resume=True)
    assert resumed.history["elbo"].tolist() == straight.history["elbo"].tolist()
    for a, b in zip(straight.model.parameters(), resumed.model.parameters()):
        assert torch.equal(a, b)


def test_resume_continues_the_step_schedule(tmp_path):
    """The schedule's count travels in the checkpoint: 3 + 3 epochs equal 6 straight, while the same
    resume with the count restarted does not; resuming under another decay is refused."""
    schedule = StepSchedule(0.9)
    straight = _amortized_fit(tmp_path / "a", 6, schedule=schedule)
    _amortized_fit(tmp_path / "b", 3, schedule=schedule)
    saved = load_checkpoint(tmp_path / "b" / "checkpoint.pt")
    assert saved["schedule"] == {"decay": 0.9, "step": 12}
    save_checkpoint(tmp_path / "c" / "checkpoint.pt", {**saved, "schedule": {"decay": 0.9, "step": 0}})
    resumed = _amortized_fit(tmp_path / "b", 6, resume=True, schedule=schedule)
    restarted = _amortized_fit(tmp_path / "c", 6, resume=True, schedule=schedule)
    assert resumed.history["elbo"].tolist() == straight.history["elbo"].tolist()
    assert all(torch.equal(a, b) for a, b in zip(straight.model.parameters(), resumed.model.parameters()))
    assert not all(torch.equal(a, c) for a, c in zip(straight.model.parameters(), restarted.model.parameters()))
    assert load_checkpoint(tmp_path / "b" / "checkpoint.pt")["schedule"] == {"decay": 0.9, "step": 24}
    with pytest.raises(ValueError, match="trained with step decay 0.9, this fit has 0.5"):
        _amortized_fit(tmp_path / "b", 8, resume=True, schedule=schedule, step_decay=0.5)


def test_a_declared_step_schedule_shrinks_every_update():
    """SGD at 0.1 on the loss (1 - loc)^2 / 2 + const: the s-th update is 0.1 decay**s (1 - loc).
    The guide, a plain function, declares decay 0.5; ``step_decay=1`` overrides it."""
    def model():
        loc = pyro.param("loc", torch.tensor(0.0, dtype=torch.float64))
        pyro.sample("x", pyro.distributions.Normal(loc, 1.0), obs=torch.tensor(1.0, dtype=torch.float64))

    def guide():
        pass

    guide.step_schedule = StepSchedule(0.5)
    for options, decay in (({}, 0.5), ({"step_decay": 1.0}, 1.0)):
        pyro.clear_param_store()
        result = fit(model, guide, optimizer=lambda params: torch.optim.SGD(params, lr=0.1), steps=5,
                     progress=False, **options)
        loc = 0.0
        for s in range(1, 6):
            loc += 0.1 * decay ** s * (1 - loc)
        assert float(result.params["loc"]) == pytest.approx(loc, rel=1e-12)


class ExplodingModel(PyroModule):
    """A model whose log-density turns NaN after a few calls."""

    max_plate_nesting = 1

    def __init__(self, after):
        super().__init__()
        self.w = PyroParam(torch.zeros(()))
        self.calls = 0
        self.after = after

    def forward(self, x, mask=None, size=None):
        self.calls += 1
        bad = torch.tensor(math.nan) if self.calls > self.after else torch.tensor(0.0)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("x", pyro.distributions.Normal(self.w + bad, 1.0).expand([x.shape[1]]).to_event(1), obs=x)


def test_non_finite_loss_names_epoch_and_step_and_keeps_the_last_checkpoint(tmp_path):
    x = torch.randn(40, 3)
    with pytest.raises(NonFiniteLossError, match=r"epoch 3, step 3.*last good checkpoint"):
        # 4 steps per epoch and no call before the first step: call 11 is epoch 3, step 3
        fit(ExplodingModel(after=10), ExactGuide(), x, epochs=5, batch_size=10, checkpoint_dir=tmp_path,
            checkpoint_every=0, progress=False)
    assert load_checkpoint(tmp_path / "checkpoint.pt")["epoch"] == 2


def test_lbfgs_refuses_a_sampling_guide():
    model = FactorAnalysis(6, 2).double()
    trained, guide = pair(model, "amortized", (6,))
    with pytest.raises(ValueError, match="L-BFGS needs a deterministic loss.*samples z"):
        fit(trained, guide.double(), data(), optimizer="lbfgs", progress=False)


def test_early_stopping_restores_the_best_parameters():
    model = FactorAnalysis(6, 2).double()
    trained, guide = pair(model, "amortized", (6,))
    guide.double()
    result = fit(trained, guide, data(), val_data=data(60, seed=2), epochs=200, lr=0.2, batch_size=200,
                 early_stopping=3, progress=False)
    assert result.stopped_early
    assert result.best_epoch == result.history["val_elbo"].idxmax() + 1


@pytest.mark.parametrize("kwargs,message", [
    (dict(elbo="nope"), "unknown ELBO 'nope'; choose one of: trace, tracegraph"),
    (dict(optimizer="sgd"), "unknown optimizer 'sgd'"),
    (dict(epochs=0), "epochs must be at least 1"),
    (dict(batch_size=0), "batch size must be at least 1"),
    (dict(device="tpu"), "device"),
    (dict(num_particles=0), "num_particles"),
    (dict(step_decay=0), r"step decay must be in \(0, 1\], got 0"),
    (dict(step_decay=1.5), r"step decay must be in \(0, 1\], got 1.5"),
    (dict(optimizer="lbfgs", step_decay=0.9), "L-BFGS takes none"),
])
def test_bad_options_are_clear_errors(kwargs, message):
    model = FactorAnalysis(6, 2).double()
    with pytest.raises(ValueError, match=message):
        fit(Marginalized(model), ExactGuide(), data(), progress=False, **kwargs)


@pytest.mark.parametrize("name", [n for n in ELBO_NAMES if "traceenum" not in n])  # enum: see the mixtures
def test_every_continuous_estimator_trains_fa(name):
    model = FactorAnalysis(6, 2).double()
    # a cold guide: warm-started at the exact posterior there would be nothing left to train
    trained, guide = pair(model, "amortized", (6,), encoder="linear", warm_start=False)
    guide.double()
    x = data()
    trained.initialize(torch.as_tensor(x), None)
    start = float(evaluate(trained, guide, x, num_samples=50).elbo.mean())
    fit(trained, guide, x, elbo=name, alpha=0.5, epochs=30, batch_size=100, lr=0.02, progress=False,
        initialize=False)
    # the ELBO of the trained pair against scikit-learn's maximum-likelihood FA on the same rows: 60
    # steps from a cold encoder close most of the gap (about 0.17 nats/row remain)
    reference = FactorAnalysis_sklearn(2).fit(x).score(x)
    elbo = float(evaluate(trained, guide, x, num_samples=50).elbo.mean())
    assert reference - 0.25 < elbo < reference + 0.01
    assert reference - elbo < 0.5 * (reference - start)


@cuda
def test_resume_on_cuda_reproduces_an_uninterrupted_run(tmp_path):
    # the GPU's random state travels in the checkpoint too
    def run(folder, epochs, resume=False):
        torch.manual_seed(0)
        trained, guide = pair(FactorAnalysis(6, 2).double(), "amortized", (6,))
        return fit(trained, guide.double(), data(), epochs=epochs, batch_size=50, seed=7, device="cuda",
                   checkpoint_dir=folder, checkpoint_every=0, resume=resume, progress=False)

    straight = run(tmp_path / "a", 4)
    run(tmp_path / "b", 2)
    resumed = run(tmp_path / "b", 4, resume=True)
    assert resumed.history["elbo"].tolist() == straight.history["elbo"].tolist()


def test_validation_split_and_time_limit_and_at_finish():
    from dlvm.inference.data import validation_split
    from dlvm.inference.hooks import AtFinish, TimeLimit

    x, mask = np.arange(20.0).reshape(10, 2), np.ones((10, 2), dtype=bool)
    train, train_mask, val, val_mask = validation_split(x, mask, 0.3, seed=1)
    assert (len(train), len(val)) == (7, 3) and train_mask.shape == (7, 2) and val_mask.shape == (3, 2)
    assert sorted(np.concatenate([train, val])[:, 0].tolist()) == x[:, 0].tolist()  # a partition
    assert validation_split(x, None, 0.01)[1] is None and len(validation_split(x, None, 0.01)[2]) == 1
    for bad in (0.0, 1.0):
        with pytest.raises(ValueError, match="strictly between 0 and 1"):
            validation_split(x, None, bad)
    with pytest.raises(ValueError, match="at least 2 rows"):
        validation_split(x[:1], None, 0.5)
    with pytest.raises(ValueError, match="positive"):
        TimeLimit(0)

    class Clock:
        elapsed, stop = 5.0, False

    limit, state = TimeLimit(10), Clock()
    limit.after_epoch(state)
    assert not state.stop
    state.elapsed = 10.0
    limit.after_epoch(state)
    assert state.stop
    calls = []
    AtFinish(lambda: calls.append(1)).finish(state)
    assert calls == [1]
