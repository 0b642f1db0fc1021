"""Reading user data files."""
import numpy as np
import pytest

from dlvm.experiments.data.files import load_table


def test_csv_with_date_index(tmp_path):
    path = tmp_path / "a.csv"
    path.write_text("Date,x,y\n2020-01-01,1,2\n2020-01-02,3,4\n")
    table = load_table(path)
    np.testing.assert_array_equal(table.x, [[1, 2], [3, 4]])
    assert table.columns == ["x", "y"] and table.index.name == "Date" and table.mask is None


def test_npz_keys(tmp_path):
    np.savez(tmp_path / "one.npz", anything=np.ones((4, 3, 2)))
    assert load_table(tmp_path / "one.npz").x.shape == (4, 3, 2)
    np.savez(tmp_path / "two.npz", data=np.ones((4, 2)), other=np.zeros(3))
    assert load_table(tmp_path / "two.npz").x.shape == (4, 2)
    np.savez(tmp_path / "bad.npz", a=np.ones((4, 2)), b=np.zeros(3))
    with pytest.raises(ValueError, match="name the data array 'data'"):
        load_table(tmp_path / "bad.npz")


def test_missing_values_become_a_mask(tmp_path):
    np.save(tmp_path / "m.npy", np.array([[1.0, np.nan], [2.0, 3.0]]))
    with pytest.raises(ValueError, match="1 missing"):
        load_table(tmp_path / "m.npy")
    table = load_table(tmp_path / "m.npy", missing="mask")
    np.testing.assert_array_equal(table.mask, [[True, False], [True, True]])


@pytest.mark.parametrize("content,message", [
    (np.ones(5), "2 or more dimensions"),
    (np.array([["a", "b"]]), "not numbers"),
])
def test_bad_arrays(tmp_path, content, message):
    np.save(tmp_path / "x.npy", content)
    with pytest.raises(ValueError, match=message):
        load_table(tmp_path / "x.npy")


def test_pickled_object_array_is_refused(tmp_path):
    np.save(tmp_path / "o.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="holds Python objects, not numbers; dlvm never loads those"):
        load_table(tmp_path / "o.npy")


def test_unsupported_suffix(tmp_path):
    (tmp_path / "x.parquet").write_text("x")
    with pytest.raises(ValueError, match="unsupported file type"):
        load_table(tmp_path / "x.parquet")
