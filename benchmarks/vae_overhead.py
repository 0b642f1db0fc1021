"""Per-epoch time of the dlvm VAE against a plain PyTorch loop with the same network.

Both train the same encoder/decoder (Softplus MLPs, Bernoulli decoder, diagonal Normal q(z|x))
on random binary rows with Adam; the plain loop computes the ELBO with the analytic KL by hand.
The two loops alternate in rounds (so a change in machine load hits both), and each dlvm fit's
first epoch (compilation, warm-up) is dropped; the table gives medians of the remaining epochs,
measured in one process, on one thread, and the ratio dlvm time / plain time per ELBO estimator.

    python benchmarks/vae_overhead.py [--rounds 3] [--epochs 3] [--threads 1]
"""
from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
from torch.nn.functional import binary_cross_entropy_with_logits, softplus

from dlvm.guides import pair
from dlvm.guides.normal import MIN_SCALE
from dlvm.inference import fit
from dlvm.models import VAE


def plain_epoch_times(model, guide, x, batch_size, epochs, lr):
    """Hand-written VAE training loop on copies of the same modules: seconds per epoch."""
    enc, loc_head, scale_head = (copy.deepcopy(m) for m in (guide.encoder, guide.loc_head, guide.scale_head))
    dec, out = copy.deepcopy(model.decoder), copy.deepcopy(model.emission.loc)
    params = [p for m in (enc, loc_head, scale_head, dec, out) for p in m.parameters()]
    optim = torch.optim.Adam(params, lr=lr)
    n, times = x.shape[0], []
    for epoch in range(epochs):
        began = time.perf_counter()
        order = torch.randperm(n)
        for start in range(0, n, batch_size):
            xb = x[order[start : start + batch_size]]
            h = enc(xb)
            loc, scale = loc_head(h), softplus(scale_head(h)) + MIN_SCALE
            z = loc + scale * torch.randn_like(loc)
            logits = out(dec(z))
            rec = binary_cross_entropy_with_logits(logits, xb, reduction="sum")
            kl = 0.5 * (loc.pow(2) + scale.pow(2) - 1).sum() - scale.log().sum()
            loss = (rec + kl) * (n / xb.shape[0])
            optim.zero_grad()
            loss.backward()
            optim.step()
        times.append(time.perf_counter() - began)
    return times


def dlvm_epoch_times(model, guide, x, batch_size, epochs, lr, elbo):
    result = fit(model, guide, x, elbo=elbo, epochs=epochs, batch_size=batch_size, lr=lr,
                 device="cpu", progress=False, initialize=False)
    return result.history["seconds"].diff().fillna(result.history["seconds"].iloc[0]).tolist()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs per round and loop")
    parser.add_argument("--rows", type=int, default=10_240)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--elbos", default="trace,meanfield,jit-trace")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print("| network | ELBO | plain s/epoch | dlvm s/epoch | ratio |")
    print("| --- | --- | --- | --- | --- |")
    for width, hidden, latent in ((784, 400, 20), (64, 128, 2)):
        x = (torch.rand(args.rows, width) < 0.3).float()
        for elbo in args.elbos.split(","):
            model, guide = pair(VAE((width,), latent, (hidden,), "bernoulli"), "amortized", (width,), hidden=(hidden,))
            plain, ours = [], []
            for _ in range(args.rounds):
                plain += plain_epoch_times(model, guide, x, 128, args.epochs, 1e-3)
                ours += dlvm_epoch_times(model, guide, x, 128, args.epochs + 1, 1e-3, elbo)[1:]
            p, d = statistics.median(plain), statistics.median(ours)
            print(f"| {width}-{hidden}-{latent} | {elbo} | {p:.3f} | {d:.3f} | {d / p:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
