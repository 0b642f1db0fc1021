"""Sequence files: .npz in (key data or the only key), CSV windows, .npz out."""
import numpy as np
import pandas as pd
import pytest
import torch

from dlvm.experiments.data.windows import load_csv_windows, load_npz_sequences, save_npz_sequences, windows


def test_npz_key_data_or_only_key(tmp_path):
    a = np.random.rand(4, 6, 2)
    np.savez(tmp_path / "a.npz", data=a, other=np.zeros(3))
    np.savez(tmp_path / "b.npz", series=a)
    np.savez(tmp_path / "c.npz", x=a, y=a)
    np.testing.assert_array_equal(load_npz_sequences(tmp_path / "a.npz"), a)
    np.testing.assert_array_equal(load_npz_sequences(tmp_path / "b.npz"), a)
    with pytest.raises(ValueError, match="name the data array 'data'"):
        load_npz_sequences(tmp_path / "c.npz")
    with pytest.raises(ValueError, match="does not exist"):
        load_npz_sequences(tmp_path / "missing.npz")


def test_windows_of_a_table():
    table = np.arange(23 * 2, dtype=float).reshape(23, 2)
    cut = windows(table, 5)
    assert cut.shape == (4, 5, 2)
    np.testing.assert_array_equal(cut[1], table[5:10])
    assert windows(table, 5, stride=1).shape == (19, 5, 2)
    assert windows(np.arange(10.0), 3).shape == (3, 3, 1)


def test_csv_windows_skip_the_date_column(tmp_path):
    frame = pd.DataFrame({"Date": pd.date_range("2020-01-01", periods=12).astype(str),
                          "a": np.arange(12.0), "b": np.arange(12.0) * 2})
    frame.to_csv(tmp_path / "t.csv", index=False)
    cut = load_csv_windows(tmp_path / "t.csv", 4)
    assert cut.shape == (3, 4, 2)
    np.testing.assert_array_equal(cut[2, :, 1], [16, 18, 20, 22])


def test_samples_round_trip(tmp_path):
    draws = torch.randn(3, 7, 2)
    path = save_npz_sequences(tmp_path / "out" / "s.npz", draws)
    with np.load(path) as archive:
        assert list(archive.keys()) == ["data"]
    np.testing.assert_allclose(load_npz_sequences(path), draws.numpy(), rtol=1e-6)
