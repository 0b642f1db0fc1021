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
* :class:`CsvRows`: a CSV file (numeric columns; a date/time column is skipped), converted once,
  chunk by chunk, into a temporary ``.npy`` that is then read as above.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import torch

#: rows of the random subsample a data-dependent ``initialize`` sees
INITIALIZE_ROWS = 20_000
#: CSV columns read as the row index (dates), not as features
INDEX_COLUMNS = ("date", "Date", "time")


def index_column(frame: pd.DataFrame) -> str | None:
    """The name of the CSV table's row index column, if it has one."""
    return next((name for name in INDEX_COLUMNS if name in frame.columns), None)


def feature_columns(path, frame: pd.DataFrame) -> list[str]:
    """The feature columns of a CSV table: every column but the first of INDEX_COLUMNS present
    (the row index), all numeric."""
    index = index_column(frame)
    names = [c for c in frame.columns if c != index]
    text = [str(c) for c in names if not pd.api.types.is_numeric_dtype(frame[c])]
    if text:
        raise ValueError(f"{path}: column {text[0]!r} is not numeric (only a date/time column may be)")
    if not names:
        raise ValueError(f"{path} has no numeric columns")
    return names


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
    float64 ``.npy`` in ``cache_dir`` (default: a new temporary folder), then read as NpyRows."""

    def __init__(self, path: str | os.PathLike, chunk_rows: int = 65_536, cache_dir=None, workers: int = 0):
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"no such file: {path}")
        def chunks():
            with pd.read_csv(path, chunksize=chunk_rows) as reader:
                yield from reader

        try:
            n, columns = 0, None
            for chunk in chunks():
                if len(chunk):
                    columns = columns or feature_columns(path, chunk)
                n += len(chunk)
            if not n:
                raise ValueError(f"{path} has a header but no data rows")
            folder = Path(cache_dir) if cache_dir else Path(tempfile.mkdtemp(prefix="dlvm-rows-"))
            target = folder / f"{path.stem}.npy"
            with open(target, "wb") as out:
                np.lib.format.write_array_header_1_0(
                    out, {"descr": np.lib.format.dtype_to_descr(np.dtype(np.float64)), "fortran_order": False,
                          "shape": (n, len(columns))})
                for chunk in chunks():
                    out.write(np.ascontiguousarray(chunk[columns].to_numpy(np.float64)).tobytes())
        except pd.errors.EmptyDataError:
            raise ValueError(f"{path} is empty") from None
        except (pd.errors.ParserError, UnicodeDecodeError) as err:
            raise ValueError(f"{path} is not a readable CSV file ({str(err).splitlines()[0][:100]})") from None
        super().__init__(target, workers=workers)
        self.columns, self.source = columns, path


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
