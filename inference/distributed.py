"""Multi-process data parallel training over ``torch.distributed`` (one process per CPU or GPU).

The scheme is that of DistributedDataParallel: every rank holds a full copy of the model and the
guide (rank 0's values are broadcast at the start), every global minibatch of B rows is split
into disjoint shards, one per rank, and the gradients are averaged before each optimizer step,
so all copies stay equal. DDP's module wrapper cannot be used: it hooks ``forward``, and Pyro's
``loss_and_grads`` runs the model and guide through its own tracing (an ELBO may call them
several times, or never call ``forward`` of the module that owns a parameter) and then calls
``backward`` on a surrogate loss. The reduction is therefore done here, once per step, after
``loss_and_grads`` has filled the ``.grad`` fields.

Scaling (eq. 6.7): rank r computes the ELBO estimate of its B_r rows scaled to the N rows of the
data set, g_r = (N / B_r) sum_{i in r} grad l_i. The single-process estimate from the whole
global batch is g = (N / B) sum_i grad l_i = sum_r (B_r / B) g_r, so each rank weights its
gradient (and loss) by B_r / B and the weighted values are summed over the ranks. A loss term
outside the ``"data"`` plate (a Bayesian model's globals) is then counted once, as the average of
the ranks' draws. The Renyi bound with several particles is not a sum over rows and is refused.
"""
from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterator, Sequence

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from .data import resolve_device


def is_distributed() -> bool:
    """Whether a process group with more than one rank is initialised."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank_and_world() -> tuple[int, int]:
    """(this process's rank, number of ranks); (0, 1) without a process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def backend_for(device: torch.device) -> str:
    """``nccl`` for CUDA devices, ``gloo`` for CPU."""
    return "nccl" if torch.device(device).type == "cuda" else "gloo"


def init_from_environment(device: str | torch.device = "auto") -> torch.device:
    """Join the process group that ``torchrun`` describes in the environment (RANK, WORLD_SIZE,
    LOCAL_RANK, MASTER_ADDR, MASTER_PORT) and return this rank's device: ``cuda:LOCAL_RANK``
    when the device is CUDA (one GPU per process), else the CPU."""
    missing = [k for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
    if missing:
        raise ValueError(
            f"--distributed needs the process group set up by torchrun ({', '.join(missing)} not set); "
            "start it with: torchrun --nproc_per_node N -m dlvm.experiments.cli fit ... --distributed"
        )
    device = resolve_device(device)
    if device.type == "cuda":
        local = int(os.environ.get("LOCAL_RANK", 0))
        if local >= torch.cuda.device_count():
            raise ValueError(f"local rank {local} has no GPU ({torch.cuda.device_count()} here)")
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend_for(device))
    return device


def shard(index: torch.Tensor, rank: int, world: int) -> torch.Tensor:
    """Rank ``rank``'s rows of one global minibatch ``index``: every ``world``-th from ``rank``.

    The shards of all ranks are disjoint and cover the batch; their sizes differ by at most one.
    """
    return index[rank::world]


class ShardedBatches:
    """Batch sampler over N rows: a fresh permutation per epoch from a seeded generator (the same
    on every rank), cut into global minibatches of ``batch_size`` rows, of which this rank yields
    its shard (:func:`shard`). As with DistributedSampler the ranks see disjoint rows; in
    addition the union of their shards at each step is exactly the single-process minibatch, so
    a data parallel fit takes the same steps as a fit in one process.

    ``set_epoch(e)`` selects the permutation; iteration yields (global index, local index) pairs
    when ``pairs`` is true, else the local index alone (for a DataLoader's ``batch_sampler``).
    """

    def __init__(self, n: int, batch_size: int, seed: int, rank: int = 0, world: int = 1, pairs: bool = False):
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.rank, self.world, self.pairs = rank, world, pairs
        self.epoch = 1

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def global_batches(self) -> list[torch.Tensor]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(self.n, generator=generator)
        return [order[i : i + self.batch_size] for i in range(0, self.n, self.batch_size)]

    def __len__(self) -> int:
        return -(-self.n // self.batch_size)

    def __iter__(self) -> Iterator:
        for index in self.global_batches():
            local = shard(index, self.rank, self.world)
            yield (index, local) if self.pairs else local


def reduce_gradients(params: Sequence[torch.Tensor], loss: float, weight: float) -> float:
    """Sum ``weight * grad`` and ``weight * loss`` over the ranks, in place, in one all-reduce.

    A parameter without a gradient on every rank keeps ``grad = None`` (as in one process, where
    the optimizer then skips it). Returns the summed loss, the same number on every rank.
    """
    if not is_distributed():
        return loss
    dtype = functools.reduce(torch.promote_types, (p.dtype for p in params))
    device = params[0].device
    grads = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1).to(dtype)
                       for p in params]) * weight
    flags = torch.tensor([float(p.grad is not None) for p in params], dtype=dtype, device=device)
    value = torch.tensor([loss * weight], dtype=dtype, device=device)
    flat = torch.cat([grads, flags, value])
    dist.all_reduce(flat)
    offset = 0
    for i, p in enumerate(params):
        size = p.numel()
        if flat[-1 - len(params) + i] > 0:
            p.grad = flat[offset : offset + size].view_as(p).to(p.dtype).clone()
        offset += size
    return float(flat[-1])


def reduce_sum(value: float, device: torch.device | str = "cpu") -> float:
    """The sum of ``value`` over the ranks (in float64)."""
    if not is_distributed():
        return value
    total = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(total)
    return float(total)


def broadcast_modules(*modules: torch.nn.Module) -> None:
    """Copy rank 0's parameters and buffers into every rank's modules."""
    if not is_distributed():
        return
    for module in modules:
        for tensor in module.state_dict().values():
            dist.broadcast(tensor, 0)


def broadcast_object(obj):
    """Rank 0's ``obj`` (any picklable value) on every rank."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, 0)
    return box[0]


def gather_objects(obj) -> list:
    """``[obj of rank 0, obj of rank 1, ...]`` on every rank."""
    if not is_distributed():
        return [obj]
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def leave_process_group(wait: bool = True) -> None:
    """Destroy the process group (if one is set up), after every rank has reached this point when
    ``wait``: a rank that tears its connections down while a peer is still finishing makes gloo
    abort that peer. A rank leaving on an error does not wait (its peers fail fast instead)."""
    if dist.is_initialized():
        if wait:
            dist.barrier()
        dist.destroy_process_group()


def _worker(rank: int, world: int, rendezvous: str, fn: Callable, args: tuple) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=world)
    try:
        fn(rank, world, *args)
    except BaseException:
        leave_process_group(wait=False)
        raise
    leave_process_group()


def launch_local(fn: Callable, world: int, *args, rendezvous: str | os.PathLike) -> None:
    """Run ``fn(rank, world, *args)`` in ``world`` new CPU processes joined by a gloo group.

    ``fn`` must be importable (a module-level function); ``rendezvous`` is a file path that does
    not exist yet, used to find each other. For tests and benchmarks on one machine; real runs
    use ``torchrun``.
    """
    mp.spawn(_worker, args=(world, str(rendezvous), fn, args), nprocs=world, join=True)
