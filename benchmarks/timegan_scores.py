"""R repeats of TimeGAN's discriminative score trained side by side (one block-diagonal GRU,
dlvm.experiments.reporting.timegan_metrics.GRUScorers) against R separate trainings, one thread.

Prints a markdown table: seconds per training step of all R repeats, and the ratio.
"""
from __future__ import annotations

import time

import numpy as np
import torch

from dlvm.experiments.data.sets import timegan_stocks
from dlvm.experiments.reporting.timegan_metrics import discriminative_scores

STEPS = 200


def main() -> None:
    torch.set_num_threads(1)
    real = timegan_stocks()
    fake = np.clip(real + np.random.default_rng(0).normal(0, 0.02, real.shape), 0, 1)
    print("| repeats | side by side (s/step) | separately (s/step) | speed-up |")
    print("| --- | --- | --- | --- |")
    for repeats in (1, 5, 10):
        began = time.perf_counter()
        discriminative_scores(real, fake, repeats=repeats, steps=STEPS)
        together = (time.perf_counter() - began) / STEPS
        began = time.perf_counter()
        for r in range(repeats):
            discriminative_scores(real, fake, repeats=1, steps=STEPS, seed=r)
        apart = (time.perf_counter() - began) / STEPS
        print(f"| {repeats} | {together:.4f} | {apart:.4f} | {apart / together:.2f} |")


if __name__ == "__main__":
    main()
