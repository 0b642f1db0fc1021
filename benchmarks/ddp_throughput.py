"""Data parallel training throughput: 2 CPU processes (gloo) against 1, on the same VAE fit.

Each configuration fits a VAE (50 features, hidden 256-256, latent 8) for a few epochs of
N rows with a global minibatch of B rows; with two processes each computes the ELBO of half of
every minibatch and the gradients are averaged (one all-reduce per step). Both runs start their
processes the same way (torch.multiprocessing, one thread per process), alternate over several
rounds, and time only the epochs after the first of each fit; the table gives the median seconds per epoch, rows per second and the speed-up
(2-process throughput / 1-process), next to the speed-up the machine itself allows for two
compute-bound processes (a matmul loop run by 1 and by 2 processes at once): where the cores are
shared or capped that is near 1, and data parallel training cannot beat it.

    python benchmarks/ddp_throughput.py [--rows 20000] [--batch-size 512] [--epochs 4]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from dlvm.guides import pair
from dlvm.inference import fit
from dlvm.inference.distributed import launch_local
from dlvm.models import VAE


def worker(rank, world, out, rows, batch_size, epochs):
    x = np.random.default_rng(0).normal(size=(rows, 50)).astype(np.float32)
    torch.manual_seed(0)
    trained, guide = pair(VAE((50,), latent_dim=8, hidden=(256, 256)), "amortized", (50,), hidden=[256, 256])
    result = fit(trained, guide, x, epochs=epochs, batch_size=batch_size, lr=1e-3, progress=False,
                 device="cpu", distributed=world > 1)
    seconds = np.diff(np.r_[0.0, result.history["seconds"].to_numpy()])[1:]  # drop the first epoch
    if rank == 0:
        Path(out).write_text(json.dumps([float(s) for s in seconds]))


def capacity(rank, world, out):
    """Seconds of a fixed matmul loop while ``world`` processes run it at once."""
    a = torch.randn(512, 512)
    began = time.perf_counter()
    for _ in range(200):
        a @ a
    Path(f"{out}.{rank}").write_text(str(time.perf_counter() - began))


def ideal_speedup(folder: Path) -> float:
    """Throughput of 2 concurrent compute-bound processes over 1: what this machine allows."""
    seconds = {}
    for world in (1, 2):
        out = folder / f"cap{world}"
        launch_local(capacity, world, str(out), rendezvous=folder / f"rdzv-cap{world}")
        seconds[world] = max(float(Path(f"{out}.{r}").read_text()) for r in range(world))
    return 2 * seconds[1] / seconds[2]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    epochs = {1: [], 2: []}
    with tempfile.TemporaryDirectory(prefix="dlvm-ddp-") as folder:
        for round_ in range(args.rounds):  # alternate, so that a change in machine load hits both
            for world in (1, 2):
                out = Path(folder) / f"w{world}-{round_}.json"
                launch_local(worker, world, str(out), args.rows, args.batch_size, args.epochs,
                             rendezvous=Path(folder) / f"rdzv{world}-{round_}")
                epochs[world] += json.loads(out.read_text())
        ideal = ideal_speedup(Path(folder))
    times = {world: statistics.median(seconds) for world, seconds in epochs.items()}
    print(f"VAE, {args.rows:,} rows x 50, global batch {args.batch_size}, median of {args.rounds} x "
          f"{args.epochs - 1} epochs (rounds alternating 1 and 2 processes), "
          f"{os.cpu_count()} CPU cores, one thread per process.\n")
    print("| processes | s/epoch | rows/s | speed-up |")
    print("| ---: | ---: | ---: | ---: |")
    for world, seconds in times.items():
        print(f"| {world} | {seconds:.2f} | {args.rows / seconds:,.0f} | {times[1] / seconds:.2f} |")
    print(f"\nSpeed-up this machine allows (2 processes of a matmul loop against 1): {ideal:.2f}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
