"""TimeVAE epoch time on TimeGAN's stock windows (3661 windows of 24 days x 6 series).

The base TimeVAE (conv encoder/decoder 50-100-200, latent 8, its default noise correlated across
features and over time), the same with independent noise per feature (``gaussian-feature``) and the
interpretable one (the base plus level, quadratic trend and a 5-season block) are fitted with Adam
at batch 64 for a few epochs on one thread; the first epoch is dropped and the table gives median
seconds per epoch, windows per second and each one's cost relative to the base.

    python benchmarks/timevae_epoch.py [--epochs 4] [--batch-size 64]
"""
from __future__ import annotations

import argparse
import statistics
import sys

import numpy as np
import torch

from dlvm.experiments.data.sets import timegan_stocks
from dlvm.guides import pair
from dlvm.inference import fit
from dlvm.models import build_model


def epoch_seconds(options: dict, x: np.ndarray, epochs: int, batch_size: int) -> float:
    torch.manual_seed(0)
    model = build_model("timevae", x.shape[1:], {"latent_dim": 8, "hidden": [50, 100, 200], **options})
    trained, guide = pair(model, "amortized", x.shape[1:])
    result = fit(trained, guide, x, epochs=epochs, batch_size=batch_size, lr=1e-3, device="cpu", progress=False)
    return statistics.median(np.diff(result.history["seconds"].to_numpy()))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    torch.set_num_threads(1)
    x = timegan_stocks().astype(np.float32)
    base = epoch_seconds({}, x, args.epochs, args.batch_size)
    independent = epoch_seconds({"likelihood": "gaussian-feature"}, x, args.epochs, args.batch_size)
    interpretable = epoch_seconds({"trend_poly": 2, "seasonality": ["5:1"]}, x, args.epochs, args.batch_size)
    print(f"{x.shape[0]} windows of {x.shape[1]} x {x.shape[2]}, batch {args.batch_size}, one thread, "
          f"median of {args.epochs - 1} epochs.\n")
    print("| TimeVAE | s/epoch | windows/s | ratio to base |")
    print("| --- | ---: | ---: | ---: |")
    for name, seconds in (("base (correlated noise, the default)", base), ("base, independent noise", independent),
                          ("interpretable", interpretable)):
        print(f"| {name} | {seconds:.2f} | {x.shape[0] / seconds:,.0f} | {seconds / base:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
