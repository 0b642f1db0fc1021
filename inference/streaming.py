"""Rows read from disk as they are needed, for data sets larger than memory.

A :class:`RowSource` is N rows of one shape that can be read by index. :func:`fit` and
:func:`evaluate` accept one in place of an array: training reads each minibatch through a torch
DataLoader (the order from :class:`~dlvm.inference.distributed.ShardedBatches`: a seeded
permutation per epoch, one shard per rank under data parallel training), evaluation reads
contiguous chunks, and a data-dependent ``initialize`` sees a bounded random subsample. Memory then
depends on the batch size and the row size, not on N.

* :class:`NpyRows`: a ``.npy`` file, read with one positioned read per run of consecutive rows.
  (Not memory-mapped: a page fault on a mapped file maps whole neighbourhoods of cached pages, so
  a few thousand random rows would make the entire file resident in the process.)
* :class:`CsvRows`: a CSV file (its dialect detected; numeric columns; the index column
  skipped), converted once, chunk by chunk, into a temporary ``.npy`` that is then read as above
  and removed when the source is closed or garbage collected.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import weakref
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .tables import csv_options, feature_columns

#: rows of the random subsample a data-dependent ``initialize`` sees
INITIALIZE_ROWS = 20_000


class RowSource:
    """N rows of shape ``row_shape``; ``read(index)`` -> array (len(index), *row_shape).

    ``workers`` DataLoader worker processes read ahead during training (0: read in the training
    process). ``columns`` names the last axis where known.
    """

    shape: tuple[int, ...]
    columns: list[str] | None = None
    workers: int = 0

    def __len__(self) -> int:
        return self.shape[0]

    @property
    def row_shape(self) -> tuple[int, ...]:
        return tuple(self.shape[1:])

    def read(self, index) -> np.ndarray:
        raise NotImplementedError

    def rows(self, start: int, stop: int) -> np.ndarray:
        """The contiguous rows start..stop-1."""
        return self.read(np.arange(start, min(stop, len(self))))

    def subsample(self, k: int, seed: int = 0) -> np.ndarray:
        """k rows drawn without replacement (all rows when N <= k), in file order."""
        n = len(self)
        if n <= k:
            return self.rows(0, n)
        index = np.sort(np.random.default_rng(seed).choice(n, size=k, replace=False))
        return self.read(index)


class NpyRows(RowSource):
    """The rows of a ``.npy`` file (N, ...), read by index from disk."""

    def __init__(self, path: str | os.PathLike, workers: int = 0):
        self.path = Path(path)
        self.workers = workers
        try:
            with open(self.path, "rb") as handle:
                version = np.lib.format.read_magic(handle)
                if version not in ((1, 0), (2, 0)):
                    raise ValueError(f"format version {version} (save it with numpy.save)")
                read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
                shape, fortran, dtype = read_header(handle)
                self.offset = handle.tell()
        except (ValueError, OSError, EOFError) as err:
            raise ValueError(f"{self.path} is not a readable .npy file ({str(err).splitlines()[0][:100]})") from None
        if fortran:
            raise ValueError(f"{self.path} is stored in Fortran order; save it in C order to stream it")
        if not (np.issubdtype(dtype, np.number) or dtype == np.bool_) or dtype.hasobject:
            raise ValueError(f"{self.path} holds a {dtype} array, not numbers")
        if np.issubdtype(dtype, np.complexfloating):
            raise ValueError(f"{self.path} holds complex numbers ({dtype}); dlvm fits real numbers")
        if len(shape) < 2 or shape[0] < 1 or int(np.prod(shape[1:])) < 1:
            raise ValueError(f"{self.path}: data must have one row per observation, got shape {tuple(shape)}")
        self.shape, self.dtype = tuple(int(s) for s in shape), dtype
        self._handle = None

    def _file(self):
        if self._handle is None:
            self._handle = open(self.path, "rb", buffering=0)
        return self._handle

    def read(self, index) -> np.ndarray:
        """The rows at ``index`` (any order, repeats allowed): one read per run of consecutive
        row numbers, straight into the result."""
        index = np.asarray(index, dtype=np.int64).reshape(-1)
        if index.size and (index.min() < 0 or index.max() >= len(self)):
            raise IndexError(f"row index out of range 0..{len(self) - 1}")
        order = np.argsort(index, kind="stable")
        ordered = index[order]
        out = np.empty((index.size, *self.row_shape), self.dtype)
        raw = out.reshape(-1).view(np.uint8)
        width = out[0].nbytes if index.size else 0
        breaks = np.flatnonzero(np.diff(ordered) != 1) + 1
        handle = self._file()
        for first, last in zip(np.r_[0, breaks], np.r_[breaks, index.size]):
            if first == last:
                continue
            handle.seek(self.offset + int(ordered[first]) * width)
            want = (int(last) - int(first)) * width
            if handle.readinto(memoryview(raw[first * width : first * width + want])) != want:
                raise ValueError(f"{self.path} is shorter than its header says")
        if np.any(order != np.arange(index.size)):
            unsorted = np.empty_like(out)
            unsorted[order] = out
            out = unsorted
        return out

    def __getstate__(self):  # DataLoader workers open their own handle
        return {**self.__dict__, "_handle": None}

    def __del__(self):
        if getattr(self, "_handle", None) is not None:
            self._handle.close()


class CsvRows(NpyRows):
    """The numeric columns of a CSV file, converted in chunks of ``chunk_rows`` rows into a
    float64 ``.npy`` in ``cache_dir`` (default: a new temporary folder, removed by :meth:`close`
    or when the source is garbage collected), then read as NpyRows."""

    def __init__(self, path: str | os.PathLike, chunk_rows: int = 65_536, cache_dir=None, workers: int = 0):
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"no such file: {path}")
        options = csv_options(path)
        folder = Path(cache_dir) if cache_dir else Path(tempfile.mkdtemp(prefix="dlvm-rows-"))
        self._cleanup = weakref.finalize(self, shutil.rmtree, folder, True) if not cache_dir else None
        try:
            target, columns = _convert_csv(path, options, folder / f"{path.stem}.npy", chunk_rows)
            super().__init__(target, workers=workers)
        except BaseException:
            self.close()
            raise
        self.columns, self.source = columns, path

    def close(self) -> None:
        """Close the file and remove the temporary folder of the converted rows."""
        if getattr(self, "_handle", None) is not None:
            self._handle.close()
            self._handle = None
        if self._cleanup is not None:
            self._cleanup()

    def __getstate__(self):  # a worker's copy never removes the parent's folder
        return {**super().__getstate__(), "_cleanup": None}


def _csv_chunks(path: Path, options: dict, chunk_rows: int):
    with pd.read_csv(path, chunksize=chunk_rows, **options) as reader:
        yield from reader


def _convert_csv(path: Path, options: dict, target: Path, chunk_rows: int) -> tuple[Path, list]:
    """Write the feature columns of the CSV ``path`` into the float64 ``.npy`` ``target``."""
    try:
        n, columns = 0, None
        for chunk in _csv_chunks(path, options, chunk_rows):
            if len(chunk):
                columns = columns or feature_columns(path, chunk)
            n += len(chunk)
        if not n:
            raise ValueError(f"{path} has a header but no data rows")
        with open(target, "wb") as out:
            np.lib.format.write_array_header_1_0(
                out, {"descr": np.lib.format.dtype_to_descr(np.dtype(np.float64)), "fortran_order": False,
                      "shape": (n, len(columns))})
            for chunk in _csv_chunks(path, options, chunk_rows):
                out.write(np.ascontiguousarray(chunk[columns].to_numpy(np.float64)).tobytes())
    except pd.errors.EmptyDataError:
        raise ValueError(f"{path} is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is not a readable CSV file ({str(err).splitlines()[0][:100]})") from None
    return target, [str(c) for c in columns]


def open_rows(path: str | os.PathLike, workers: int = 0) -> RowSource:
    """A streaming source for a ``.npy`` or ``.csv`` file."""
    suffix = Path(path).suffix.lower()
    if suffix == ".npy":
        return NpyRows(path, workers=workers)
    if suffix == ".csv":
        return CsvRows(path, workers=workers)
    raise ValueError(f"{path}: streaming reads .npy and .csv files")


class _Rows(torch.utils.data.Dataset):
    """``dataset[index]`` -> the rows at ``index`` (a tensor of row numbers) as one tensor."""

    def __init__(self, source: RowSource):
        self.source = source

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index):
        return torch.from_numpy(self.source.read(np.asarray(index)))


def row_loader(source: RowSource, sampler, device: torch.device) -> torch.utils.data.DataLoader:
    """A DataLoader yielding one tensor per index tensor of ``sampler`` (page-locked when the
    device is CUDA, so the copy to the GPU can overlap the next read)."""
    return torch.utils.data.DataLoader(
        _Rows(source), sampler=sampler, batch_size=None, num_workers=source.workers,
        pin_memory=torch.device(device).type == "cuda",
        # its own generator: the loader's worker seed must not consume the global random stream
        generator=torch.Generator().manual_seed(sampler.seed),
    )


def chunks(data, mask, batch_size: int, rank: int = 0, world: int = 1):
    """(x, mask) pieces of at most ``batch_size`` rows covering ``data`` (array/tensor or
    RowSource); with ``world`` ranks, this rank's share (chunk k goes to rank k mod world)."""
    n = len(data)
    for k, start in enumerate(range(0, n, batch_size)):
        if k % world != rank:
            continue
        stop = min(start + batch_size, n)
        if isinstance(data, RowSource):
            yield data.rows(start, stop), None
        else:
            yield data[start:stop], None if mask is None else mask[start:stop]
