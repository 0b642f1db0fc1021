"""Streaming rows from .npy and CSV files: the same numbers as in-memory data."""
import gc
import tempfile

import numpy as np
import pytest
import torch

from dlvm.experiments.data import read_data
from dlvm.guides import pair
from dlvm.inference import CsvRows, NpyRows, evaluate, fit, open_rows
from dlvm.models import VAE, FactorAnalysis
from tests.conftest import cuda


def table(n=90, d=5, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 2)) @ rng.normal(size=(2, d)) + rng.normal(size=(n, d))


@pytest.fixture
def npy(tmp_path):
    np.save(tmp_path / "x.npy", table())
    return tmp_path / "x.npy"


def test_npy_rows_read_any_index_and_shape(tmp_path):
    x = np.random.default_rng(1).random((30, 4, 3)).astype(np.float32)
    np.save(tmp_path / "w.npy", x)
    rows = NpyRows(tmp_path / "w.npy")
    assert len(rows) == 30 and rows.row_shape == (4, 3)
    index = np.array([7, 2, 29, 2])
    np.testing.assert_array_equal(rows.read(index), x[index])
    np.testing.assert_array_equal(rows.rows(25, 40), x[25:])
    sub = rows.subsample(10, seed=0)
    assert sub.shape == (10, 4, 3) and len({r.tobytes() for r in sub}) == 10


def test_csv_rows_match_the_in_memory_reader(tmp_path):
    x = table(23)
    path = tmp_path / "t.csv"
    with open(path, "w") as f:
        f.write("date,a,b,c,d,e\n")
        for i, row in enumerate(x):
            f.write(f"2021-01-{i + 1:02d}," + ",".join(f"{v:.6f}" for v in row) + "\n")
    rows = CsvRows(path, chunk_rows=5, cache_dir=tmp_path)
    expected = read_data(path)
    assert rows.columns == expected.columns == ["a", "b", "c", "d", "e"]
    np.testing.assert_array_equal(rows.rows(0, 23), expected.x)


@pytest.mark.parametrize("text,message", [
    ("a,b\n1,x\n", "column 'b' is not numeric"),
    ("date\n2020-01-01\n", "no numeric columns"),
    ("a,b\n", "no data rows"),
])
def test_bad_csv_is_one_line(tmp_path, text, message):
    (tmp_path / "bad.csv").write_text(text)
    with pytest.raises(ValueError, match=message):
        CsvRows(tmp_path / "bad.csv", cache_dir=tmp_path)


def test_bad_npy_and_suffix(tmp_path):
    (tmp_path / "bad.npy").write_bytes(b"not numpy")
    with pytest.raises(ValueError, match="not a readable .npy file"):
        NpyRows(tmp_path / "bad.npy")
    np.save(tmp_path / "flat.npy", np.arange(5.0))
    with pytest.raises(ValueError, match="one row per observation"):
        NpyRows(tmp_path / "flat.npy")
    with pytest.raises(ValueError, match="streaming reads .npy and .csv"):
        open_rows(tmp_path / "x.npz")


def fa():
    torch.manual_seed(0)
    return pair(FactorAnalysis(5, 2).double(), "exact", (5,))


def vae():
    torch.manual_seed(0)
    trained, guide = pair(VAE((5,), latent_dim=2, hidden=(8,)).double(), "amortized", (5,), hidden=[8])
    return trained, guide.double()


@pytest.mark.parametrize("build", [fa, vae])
def test_streamed_fit_and_evaluate_equal_in_memory(npy, build):
    # the same seeded batches in the same order, and initialize sees every row (N < INITIALIZE_ROWS)
    results = []
    for data in (table(), NpyRows(npy)):
        trained, guide = build()
        result = fit(trained, guide, data, val_data=data, epochs=3, batch_size=32, seed=2, progress=False)
        torch.manual_seed(5)
        results.append((result, evaluate(trained, guide, data, num_samples=4, batch_size=40)))
    (memory, eval_memory), (streamed, eval_streamed) = results
    assert memory.history["elbo"].tolist() == streamed.history["elbo"].tolist()
    assert memory.history["val_elbo"].tolist() == streamed.history["val_elbo"].tolist()
    torch.testing.assert_close(eval_memory.elbo, eval_streamed.elbo, rtol=0, atol=0)


def test_initialize_sees_a_bounded_subsample(npy, monkeypatch):
    import dlvm.inference.engine as engine

    monkeypatch.setattr(engine, "INITIALIZE_ROWS", 40)
    seen = []
    trained, guide = fa()
    original = trained.initialize
    trained.initialize = lambda x, mask=None: (seen.append(x.shape[0]), original(x, mask))
    fit(trained, guide, NpyRows(npy), epochs=1, batch_size=30, progress=False)
    assert seen == [40]


def test_a_streamed_source_takes_no_mask(npy):
    trained, guide = fa()
    with pytest.raises(ValueError, match="streamed data source has no mask"):
        fit(trained, guide, NpyRows(npy), mask=np.ones((90, 5), bool), epochs=1, progress=False)


@cuda
def test_streamed_fit_on_cuda_equals_in_memory_on_cuda(npy):
    # pinned host batches copied to the GPU give the same steps as data held on the GPU
    histories = []
    for data in (table(), NpyRows(npy)):
        trained, guide = vae()
        result = fit(trained, guide, data, epochs=2, batch_size=32, seed=2, device="cuda", progress=False)
        assert next(trained.parameters()).is_cuda
        histories.append(result.history["elbo"].tolist())
    np.testing.assert_allclose(histories[0], histories[1], rtol=1e-10)


def test_csv_conversion_folder_is_removed_on_close_and_collection(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    path = tmp_path / "t.csv"
    path.write_text("a,b\n" + "\n".join(f"{i},{2 * i}" for i in range(10)) + "\n")
    rows = CsvRows(path)
    folder = rows.path.parent
    assert folder.parent == tmp_path and folder.name.startswith("dlvm-rows-")
    np.testing.assert_array_equal(rows.rows(8, 10), [[8, 16], [9, 18]])
    rows.close()
    assert not folder.exists()
    rows = CsvRows(path)
    folder = rows.path.parent
    del rows
    gc.collect()
    assert not folder.exists()
    (tmp_path / "bad.csv").write_text("a,b\n1,x\n")
    with pytest.raises(ValueError, match="not numeric"):
        CsvRows(tmp_path / "bad.csv")
    assert not list(tmp_path.glob("dlvm-rows-*"))  # a failed conversion leaves nothing either


def test_csv_rows_read_a_semicolon_dialect_with_decimal_commas(tmp_path):
    path = tmp_path / "eu.csv"
    path.write_text("a;b\n1,5;2\n3;4,25\n")
    rows = CsvRows(path, cache_dir=tmp_path)
    np.testing.assert_array_equal(rows.rows(0, 2), [[1.5, 2.0], [3.0, 4.25]])
