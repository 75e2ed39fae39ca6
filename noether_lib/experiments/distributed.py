"""Data-parallel training under ``torchrun``: the process group, the device of each process, and collectives.

Outside ``torchrun`` (no ``WORLD_SIZE`` in the environment) everything here degrades to a single process and the
collectives do nothing. Under ``torchrun`` every process holds the whole data set, takes its own slice of each
global batch and :class:`~torch.nn.parallel.DistributedDataParallel` averages the gradients, so all processes keep
identical parameters; only rank 0 tracks charges and writes results.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

__all__ = ["Distributed", "choose_device"]


def choose_device(requested: str | None = None, local_rank: int = 0) -> torch.device:
    """The device to train on, chosen at run time: ``requested`` if given (``"cpu"``, ``"cuda"``, ``"cuda:1"``),
    else this process's GPU when CUDA is available, else the CPU."""
    if requested:
        device = torch.device(requested)
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", local_rank)
    else:
        device = torch.device("cuda", local_rank) if torch.cuda.is_available() else torch.device("cpu")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {requested!r} was requested but CUDA is not available")
    return device


@dataclass(frozen=True)
class Distributed:
    """This process's place in a data-parallel job (``world_size == 1`` outside ``torchrun``)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @classmethod
    def from_environment(cls, device: str | None = None) -> tuple[Distributed, torch.device]:
        """Read ``torchrun``'s environment, start the process group if needed (NCCL on GPUs, gloo on CPUs) and
        return this process's place and device."""
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
        chosen = choose_device(device, local_rank)
        if world_size > 1 and not dist.is_initialized():
            if chosen.type == "cuda":
                torch.cuda.set_device(chosen)
            dist.init_process_group("nccl" if chosen.type == "cuda" else "gloo")
        return cls(rank, world_size, local_rank), chosen

    @property
    def is_main(self) -> bool:
        """Whether this is rank 0, the process that tracks, reports progress and writes results."""
        return self.rank == 0

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum ``tensor`` over all processes, in place."""
        if self.world_size > 1:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def broadcast(self, value: Any) -> Any:
        """Rank 0's ``value`` on every process."""
        if self.world_size == 1:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        """Wait for every process."""
        if self.world_size > 1:
            dist.barrier()
