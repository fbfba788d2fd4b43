"""Data-parallel training and sharded evaluation on `torch.distributed` (gloo on CPU, NCCL on GPUs).

Launch N processes with `torchrun --nproc-per-node N -m semrec train ...` (or `semrec train ... --nproc N`);
each process reads RANK / WORLD_SIZE / LOCAL_RANK from the environment torchrun sets. Every rank draws the
same global batch from the same seeded generator and trains on its slice of the rows, and
DistributedDataParallel averages the gradients, so N processes take the steps one process would take with
the same global batch. Rank 0 alone writes checkpoints and logs; its decisions (early stopping, time budget)
are broadcast. A checkpoint holds no per-rank state, so it resumes at any world size.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
import torch.distributed as dist

from semrec.errors import ConfigError


@dataclass(frozen=True)
class World:
    """This process's place among the training processes (rank 0 of 1 when not distributed)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def active(self) -> bool:
        return self.size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


SINGLE = World()


def env_world() -> World:
    """The world torchrun describes in the environment (SINGLE when WORLD_SIZE is unset or 1)."""
    try:
        size = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError as e:
        raise ConfigError(f"RANK/WORLD_SIZE/LOCAL_RANK must be integers ({e}); launch with torchrun") from None
    if size < 1 or not 0 <= rank < size:
        raise ConfigError(f"RANK={rank} is not in [0, WORLD_SIZE={size}); launch with torchrun")
    return World(rank, size, local)


def join(device: str) -> World:
    """Join the process group torchrun set up (once per process); SINGLE outside torchrun.

    The backend follows the device: NCCL for CUDA, gloo otherwise."""
    world = env_world()
    if world.active and not dist.is_initialized():
        backend = "nccl" if str(device).startswith("cuda") else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(world.local_rank)
        dist.init_process_group(backend=backend)
    return world


def rank_device(device: str, world: World) -> str:
    """Each rank's own GPU (`cuda:LOCAL_RANK`) when training on CUDA; the device unchanged otherwise."""
    if world.active and str(device).startswith("cuda"):
        return f"cuda:{world.local_rank}"
    return str(device)


def shard_batch(batch: dict[str, Any], world: World, shared: frozenset[str]) -> dict[str, Any] | None:
    """This rank's contiguous slice of a global batch's rows; None when the batch has fewer rows than ranks
    (every rank sees the same global batch, so all skip it together).

    Rows are counted on the batch's first tensor; tensors with another first dimension, and the keys in
    `shared` (e.g. sampled negatives used by every row), go to every rank whole."""
    rows = next(v.shape[0] for v in batch.values() if torch.is_tensor(v))
    if rows < world.size:
        return None
    out = {}
    for key, value in batch.items():
        per_row = torch.is_tensor(value) and key not in shared and value.dim() and value.shape[0] == rows
        out[key] = torch.tensor_split(value, world.size)[world.rank] if per_row else value
    return out


class LossModule(torch.nn.Module):
    """`model.loss` as a module, so DistributedDataParallel sees the whole loss (tied embeddings included)
    inside its forward and can average every parameter's gradient."""

    def __init__(self, network: torch.nn.Module, loss: Callable[[dict[str, torch.Tensor]], torch.Tensor]):
        super().__init__()
        self.network = network
        self.compute = loss

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.compute(batch)


def data_parallel(network: torch.nn.Module, loss: Callable, sample: dict[str, Any]) -> torch.nn.Module:
    """A DistributedDataParallel wrapper around `loss` (rank 0's weights are broadcast to all ranks here).

    One trial backward on `sample` (a batch already on the device) shows whether the loss leaves some
    parameters without a gradient; only then must DDP search the graph for them on every step (slower)."""
    network.zero_grad(set_to_none=True)
    loss(sample).backward()
    unused = any(p.grad is None for p in network.parameters() if p.requires_grad)
    network.zero_grad(set_to_none=True)
    t = _collective(torch.tensor([float(unused)]))
    dist.all_reduce(t, op=dist.ReduceOp.MAX)  # all ranks must agree
    module = LossModule(network, loss)
    device = next(network.parameters()).device
    ids = [device.index] if device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(module, device_ids=ids, find_unused_parameters=bool(t[0] > 0))


def _collective(t: torch.Tensor) -> torch.Tensor:
    """`t` on the device the process group's backend communicates from (a GPU for NCCL)."""
    return t.cuda() if dist.get_backend() == "nccl" else t


def step_consensus(loss: torch.Tensor, stop: bool, world: World) -> tuple[float, bool]:
    """(mean loss over ranks, rank 0's stop decision) in one all-reduce: every rank then raises on a
    non-finite loss, or stops for the time budget, at the same step."""
    if not world.active:
        return float(loss.detach()), stop
    t = _collective(torch.tensor([float(loss.detach()), float(stop and world.is_main)], dtype=torch.float64))
    dist.all_reduce(t)
    return float(t[0]) / world.size, bool(t[1] > 0)


def broadcast_float(value: float, world: World) -> float:
    """Rank 0's `value` on every rank."""
    if not world.active:
        return value
    t = _collective(torch.tensor([value], dtype=torch.float64))
    dist.broadcast(t, src=0)
    return float(t[0])


def merge_max(values: np.ndarray, world: World) -> np.ndarray:
    """Element-wise maximum of `values` over ranks: each rank fills its own entries of an array that holds a
    smaller sentinel elsewhere (ranks of its users, items it covered), and all ranks get the whole array."""
    if not world.active:
        return values
    t = _collective(torch.from_numpy(np.ascontiguousarray(values)).to(torch.int64))
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return t.cpu().numpy().astype(values.dtype)


def my_part(n: int, world: World) -> slice:
    """This rank's contiguous part of n rows (sizes differ by at most one)."""
    return slice(world.rank * n // world.size, (world.rank + 1) * n // world.size)


def barrier(world: World) -> None:
    if world.active:
        dist.barrier()


def launch_local(nproc: int, args: list[str]) -> int:
    """Run `python -m semrec ARGS` as `nproc` processes on this machine under torchrun's agent (in this process);
    the exit status of the first process that failed, else 0.

    `semrec train ... --nproc N` calls this after checking its options, so bad input fails once, before; what only
    the data can reveal fails in every process, each printing its one-line `error:`, and torchrun's report of the
    failed processes (a traceback-shaped summary) is not printed on top of them."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    if env_world().active:
        raise ConfigError("--nproc inside a torchrun launch: give the process count to torchrun only")
    launch = get_args_parser().parse_args(["--standalone", f"--nproc-per-node={nproc}", "-m", "semrec",
                                           *without_option(args, "--nproc")])
    unset = "OMP_NUM_THREADS" not in os.environ
    if unset:  # torchrun's own default, set here so it does not warn about it; the caller's environment is restored
        os.environ["OMP_NUM_THREADS"] = "1"
    try:
        run(launch)
    except ChildFailedError as e:
        _rank, failure = e.get_first_failure()
        return failure.exitcode if failure.exitcode > 0 else 1
    finally:
        if unset:
            os.environ.pop("OMP_NUM_THREADS", None)
    return 0


def without_option(args: list[str], flag: str) -> list[str]:
    """`args` without `flag VALUE` / `flag=VALUE`."""
    out, skip = [], False
    for a in args:
        if skip:
            skip = False
        elif a == flag:
            skip = True
        elif not a.startswith(flag + "="):
            out.append(a)
    return out
