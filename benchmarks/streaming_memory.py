"""Peak resident memory of a fit on rows streamed from a .npy file, at 10^5 and 10^6 rows.

For each size a table of N x 50 float64 values (a 3-factor model plus noise) is written, chunk by
chunk, to a temporary folder; each measurement then runs in a fresh process (so peaks do not
mix) that fits one epoch of FA (exact marginal, minibatches) or the VAE on the streamed rows, or
FA on the same rows loaded into memory for contrast, and reports ``ru_maxrss``. The table gives
the peak RSS in MiB, the increment over the same process right after importing dlvm, and the
ratio of the 10^6-row peak to the 10^5-row peak (1 = independent of N).

    python benchmarks/streaming_memory.py [--sizes 100000,1000000] [--features 50]
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CHUNK = 50_000


def write_table(path: Path, n: int, d: int, seed: int = 0) -> None:
    """N x d rows written in chunks (the table is never whole in memory)."""
    rng = np.random.default_rng(seed)
    loadings = rng.normal(size=(3, d))
    with open(path, "wb") as out:
        np.lib.format.write_array_header_1_0(out, {"descr": "<f8", "fortran_order": False, "shape": (n, d)})
        for start in range(0, n, CHUNK):
            rows = min(CHUNK, n - start)
            out.write((rng.normal(size=(rows, 3)) @ loadings + rng.normal(size=(rows, d))).tobytes())


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def measure(path: str, model_name: str, mode: str, batch_size: int) -> dict:
    """One epoch in this process; returns the peak RSS before and after."""
    import torch

    from dlvm.guides import pair
    from dlvm.inference import NpyRows, fit
    from dlvm.models import VAE, FactorAnalysis

    torch.set_num_threads(1)
    base = peak_mib()
    source = NpyRows(path)
    d = source.shape[1]
    torch.manual_seed(0)
    if model_name == "fa":
        trained, guide = pair(FactorAnalysis(d, 3), "exact", (d,))
    else:
        trained, guide = pair(VAE((d,), latent_dim=3, hidden=(64,)), "amortized", (d,))
    data = source if mode == "stream" else np.load(path)
    began = time.perf_counter()
    fit(trained, guide, data, epochs=1, batch_size=batch_size, lr=1e-2, progress=False, device="cpu")
    return {"base": base, "peak": peak_mib(), "seconds": time.perf_counter() - began}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--features", type=int, default=50)
    parser.add_argument("--batch-size", type=int, default=4096)
    parser.add_argument("--child", nargs=3, metavar=("PATH", "MODEL", "MODE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(*args.child, args.batch_size)))
        return 0
    sizes = [int(s) for s in args.sizes.split(",")]
    cases = [("fa", "stream"), ("vae", "stream"), ("fa", "memory")]
    results = {}
    with tempfile.TemporaryDirectory(prefix="dlvm-bench-") as folder:
        for n in sizes:
            path = Path(folder) / f"rows{n}.npy"
            write_table(path, n, args.features)
            for model_name, mode in cases:
                done = subprocess.run(
                    [sys.executable, __file__, "--child", str(path), model_name, mode,
                     "--batch-size", str(args.batch_size)],
                    capture_output=True, text=True, check=True,
                )
                results[n, model_name, mode] = json.loads(done.stdout.strip().splitlines()[-1])
            path.unlink()
    first, last = sizes[0], sizes[-1]
    print(f"One epoch, {args.features} float64 features, batch {args.batch_size}, one thread; "
          "peak RSS (MiB), each line measured in a fresh process.\n")
    print("| model | data | rows | peak RSS | over import | seconds |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    for (n, model_name, mode), r in results.items():
        print(f"| {model_name} | {mode} | {n:,} | {r['peak']:.0f} | {r['peak'] - r['base']:.0f} | {r['seconds']:.1f} |")
    print(f"\n| model | data | peak RSS ratio {last:,} / {first:,} rows |")
    print("| --- | --- | ---: |")
    for model_name, mode in cases:
        ratio = results[last, model_name, mode]["peak"] / results[first, model_name, mode]["peak"]
        print(f"| {model_name} | {mode} | {ratio:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
