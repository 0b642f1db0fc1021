"""Amortized Normal guides and the guide registry."""
import pytest
import torch
import pyro.poutine as poutine

from dlvm.guides import AmortizedNormalGuide, ExactGuide, MLPEncoder, make_encoder, pair
from dlvm.models import FactorAnalysis, Marginalized


@pytest.mark.parametrize("encoder", ["linear", "mlp"])
@pytest.mark.parametrize("covariance", ["diagonal", "full"])
def test_guide_shapes_and_valid_distribution(encoder, covariance):
    model = FactorAnalysis(6, 3)
    _, guide = pair(model, "amortized", (6,), encoder=encoder, guide_covariance=covariance, hidden=(16,))
    x = torch.randn(11, 6)
    q = guide.distribution(x)
    assert q.batch_shape == (11,) and q.event_shape == (3,)
    trace = poutine.trace(guide).get_trace(x)
    assert trace.nodes["z"]["value"].shape == (11, 3)
    if covariance == "full":
        tril = q.scale_tril
        assert torch.all(torch.diagonal(tril, dim1=-2, dim2=-1) > 0)
        assert torch.equal(tril, torch.tril(tril))


def test_full_covariance_has_free_off_diagonal():
    guide = AmortizedNormalGuide(MLPEncoder(4, (8,)), 3, "full")
    torch.nn.init.normal_(guide.tril_head.bias)
    cov = guide.distribution(torch.randn(2, 4)).covariance_matrix
    assert cov[0, 1, 0].abs() > 0


def test_mask_input_doubles_the_encoder_width_and_hides_missing_values():
    model = FactorAnalysis(5, 2)
    _, guide = pair(model, "amortized", (5,), encoder="linear", mask_input=True)
    assert guide.encoder.output_dim == 10
    x = torch.randn(3, 5)
    mask = torch.ones(3, 5, dtype=torch.bool)
    mask[0, 1] = False
    x2 = x.clone()
    x2[0, 1] = 123.0
    torch.testing.assert_close(guide.distribution(x, mask).mean, guide.distribution(x2, mask).mean)


def test_score_function_guide_hides_rsample():
    guide = AmortizedNormalGuide(MLPEncoder(4), 2, reparameterized=False)
    assert not guide.distribution(torch.randn(3, 4)).has_rsample


def test_registry_errors_name_the_choices():
    model = FactorAnalysis(5, 2)
    with pytest.raises(ValueError, match="choose one of: exact, amortized"):
        pair(model, "nope", (5,))
    with pytest.raises(ValueError, match="unknown encoder 'rnn'"):
        make_encoder("rnn", (5,))
    with pytest.raises(ValueError, match="covariance"):
        AmortizedNormalGuide(MLPEncoder(4), 2, "banded")


def test_exact_pair_collapses_the_model():
    model = FactorAnalysis(5, 2)
    trained, guide = pair(model, "exact", (5,))
    assert isinstance(trained, Marginalized) and isinstance(guide, ExactGuide)
    assert trained.log_marginal is not None and trained.num_features == 5


def test_exact_pair_of_a_model_that_already_ran_is_a_clear_error():
    from dlvm.models import GaussianMixture

    model = GaussianMixture(1, 2).double()
    model.log_marginal(torch.randn(30, 1, dtype=torch.float64))  # runs the model's Pyro methods
    with pytest.raises(ValueError, match="pair it with the exact guide before"):
        pair(model, "exact", (1,))


def test_pair_returns_a_guide_in_the_model_dtype():
    from dlvm.guides import pair
    from dlvm.models import VAE

    model = VAE((5,), latent_dim=2, hidden=(8,)).double()
    _, guide = pair(model, "amortized", (5,), hidden=(8,))
    assert {p.dtype for p in guide.parameters()} == {torch.float64}


def test_importing_dlvm_changes_no_global_pyro_setting():
    import subprocess
    import sys

    code = ("import pyro; before = pyro.settings.get('module_local_params'); "
            "import dlvm.models, dlvm.guides, dlvm.inference, dlvm.experiments.cli; "
            "assert pyro.settings.get('module_local_params') == before, 'changed'")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0
