"""Shape tests for every encoder x guide combination, and variable sequence length."""
import math

import pytest
import torch

from dlvm.guides import ENCODERS, make_encoder, pair
from dlvm.models import VAE, VRAE

SEQUENCE_ENCODERS = ["gru", "lstm", "bigru", "bilstm", "conv", "transformer"]


@pytest.mark.parametrize("encoder", sorted(ENCODERS))
@pytest.mark.parametrize("covariance", ["diagonal", "full"])
@pytest.mark.parametrize("mask_input", [False, True])
def test_every_encoder_with_every_guide_gives_latent_shape(encoder, covariance, mask_input):
    shape = (12, 3)
    model = VRAE(3, 12, latent_dim=4, hidden=(8,))
    _, guide = pair(model, "amortized", shape, encoder=encoder, hidden=(8,),
                    guide_covariance=covariance, mask_input=mask_input)
    x = torch.randn(5, *shape)
    mask = torch.rand(5, *shape) > 0.2
    q = guide.distribution(x, mask if mask_input else None)
    assert q.batch_shape == (5,) and q.event_shape == (4,)
    assert guide.encode(x, mask if mask_input else None).shape == (5, 4)
    assert guide(x, mask if mask_input else None).shape == (5, 4)


@pytest.mark.parametrize("encoder", sorted(ENCODERS))
def test_encoders_on_tables(encoder):
    _, guide = pair(VAE((10,), 2, (8,)), "amortized", (10,), encoder=encoder, hidden=(8,))
    assert guide.encode(torch.randn(6, 10)).shape == (6, 2)


@pytest.mark.parametrize("encoder", SEQUENCE_ENCODERS)
def test_sequence_encoders_take_any_length(encoder):
    net = make_encoder(encoder, (20, 3), (8,))
    widths = {net(torch.randn(4, steps, 3)).shape for steps in (1, 7, 20, 45)}
    assert widths == {(4, net.output_dim)}
    assert net.output_dim == (16 if encoder.startswith("bi") else 8)


def test_rnn_encoder_uses_the_last_hidden_state():
    net = make_encoder("gru", (5, 2), (6,))
    x = torch.randn(3, 5, 2)
    outputs, _ = net.rnn(x)
    torch.testing.assert_close(net(x), outputs[:, -1])


def test_bidirectional_state_is_forward_end_and_backward_start():
    net = make_encoder("bilstm", (5, 2), (6,))
    x = torch.randn(3, 5, 2)
    outputs, _ = net.rnn(x)
    torch.testing.assert_close(net(x), torch.cat([outputs[:, -1, :6], outputs[:, 0, 6:]], -1))


@pytest.mark.parametrize("hidden", [(), (8, 4)])
def test_bad_rnn_sizes(hidden):
    with pytest.raises(ValueError, match="hidden"):
        make_encoder("gru", (5, 2), hidden)


def test_vrae_defaults_to_an_encoder_of_its_cell():
    _, guide = pair(VRAE(2, 10, 3, (8,), "lstm"), "amortized", (10, 2))
    assert guide.encoder.cell == "lstm"


def test_positional_encoding_closed_form():
    from dlvm.models.decoders import positional_encoding

    pe = positional_encoding(5, 4)
    assert pe.shape == (5, 4)
    assert torch.allclose(pe[3], torch.tensor([math.sin(3), math.cos(3), math.sin(3 / 100), math.cos(3 / 100)]))


def test_transformer_encoder_pools_over_any_length_and_sees_order():
    from dlvm.guides import TransformerEncoder

    torch.manual_seed(0)
    enc = TransformerEncoder(3, (8, 8))
    x = torch.randn(4, 10, 3)
    assert enc(x).shape == (4, 8) and enc(x[:, :6]).shape == (4, 8) and enc.output_dim == 8
    # positions make the pooled feature depend on the order of the steps
    assert not torch.allclose(enc(x), enc(x.flip(1)), atol=1e-4)
    with pytest.raises(ValueError, match="at least 2"):
        TransformerEncoder(3, (1,))
