"""Epoch time on the GPU against the CPU for the VAE and for FA, where a GPU exists.

The same fit (same seed, rows and minibatches) runs with ``device="cpu"`` (all CPU threads) and
``device="cuda"``; the first epoch (warm-up, CUDA context) is dropped and the table gives median
seconds per epoch over the rest and the speed-up CPU / CUDA. Without a GPU it says so.

    python benchmarks/cuda_cpu.py [--rows 50000] [--epochs 4]
"""
from __future__ import annotations

import argparse
import statistics
import sys

import numpy as np
import torch

from dlvm.guides import pair
from dlvm.inference import fit
from dlvm.models import VAE, FactorAnalysis


def epoch_seconds(build, x, device, epochs, batch_size) -> float:
    torch.manual_seed(0)
    trained, guide = build()
    result = fit(trained, guide, x, epochs=epochs, batch_size=batch_size, lr=1e-3, device=device, progress=False)
    return statistics.median(np.diff(result.history["seconds"].to_numpy()))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--epochs", type=int, default=4)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("no GPU on this machine: CUDA vs CPU not measured.")
        return 0
    x = np.random.default_rng(0).normal(size=(args.rows, 50)).astype(np.float32)
    cases = {
        "VAE 50-512-512-16, batch 1024": (
            lambda: pair(VAE((50,), latent_dim=16, hidden=(512, 512)), "amortized", (50,), hidden=[512, 512]), 1024),
        "FA 50 x 10, exact marginal, batch 4096": (lambda: pair(FactorAnalysis(50, 10), "exact", (50,)), 4096),
    }
    print(f"{args.rows:,} rows x 50, median of {args.epochs - 1} epochs; GPU: {torch.cuda.get_device_name(0)}, "
          f"CPU threads: {torch.get_num_threads()}.\n")
    print("| model | CPU s/epoch | CUDA s/epoch | speed-up |")
    print("| --- | ---: | ---: | ---: |")
    for name, (build, batch) in cases.items():
        cpu = epoch_seconds(build, x, "cpu", args.epochs, batch)
        gpu = epoch_seconds(build, x, "cuda", args.epochs, batch)
        print(f"| {name} | {cpu:.3f} | {gpu:.3f} | {cpu / gpu:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
