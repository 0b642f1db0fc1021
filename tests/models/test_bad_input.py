"""Bad input gives one clear line: NaN, Bernoulli data outside [0, 1], short series, wrong rank."""
import numpy as np
import pytest

from dlvm.experiments.data.windows import check_sequences, load_npz_sequences, windows
from dlvm.guides import pair
from dlvm.inference import fit
from dlvm.models import VAE


def one_line(call, match):
    with pytest.raises(ValueError, match=match) as err:
        call()
    assert "\n" not in str(err.value)


def test_nan_data():
    x = np.random.rand(10, 4)
    x[2, 1] = np.nan
    model, guide = pair(VAE((4,), 2), "amortized", (4,))
    one_line(lambda: fit(model, guide, x, epochs=1, progress=False), "NaN")
    one_line(lambda: check_sequences(x.reshape(10, 2, 2)), "NaN")


def test_bernoulli_data_outside_unit_interval():
    x = np.random.rand(10, 4) * 16
    model, guide = pair(VAE((4,), 2, likelihood="bernoulli"), "amortized", (4,))
    one_line(lambda: fit(model, guide, x, epochs=1, progress=False), r"\[0, 1\]")


def test_series_shorter_than_the_window():
    one_line(lambda: windows(np.zeros((5, 3)), 10), "fewer than the window")


def test_wrong_rank(tmp_path):
    np.savez(tmp_path / "flat.npz", data=np.zeros((4, 5)))
    one_line(lambda: load_npz_sequences(tmp_path / "flat.npz"), r"\(N, T, D\)")
    one_line(lambda: windows(np.zeros((4, 5, 6)), 2), "steps, features")
