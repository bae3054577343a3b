"""Where this process runs and how it computes: its rank and device in a ``torchrun`` group, the
collectives that training and evaluation share, and the autocast of a run's precision.

Training (:mod:`.loop`) and evaluation (:mod:`.evaluation`) both import this module; neither
imports the other's.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from ..errors import InvalidArgumentError


@dataclass
class Ranks:
    """Where this process sits in the run."""

    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that logs and writes files."""
        return self.rank == 0


def setup_ranks(device: str) -> Ranks:
    """Join the torchrun process group if there is one (NCCL on cuda, gloo on cpu) and pick this rank's device."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    kind = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else torch.device(device).type
    if kind == "cuda" and not torch.cuda.is_available():
        raise InvalidArgumentError("--device cuda was asked for, but torch sees no CUDA device here.")
    target = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0"))) if kind == "cuda" else torch.device(kind)
    if kind == "cuda":
        torch.cuda.set_device(target)
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if kind == "cuda" else "gloo")
    return Ranks(rank, world_size, target)


def all_sum(t: torch.Tensor, ranks: Ranks) -> torch.Tensor:
    """``t`` summed over all ranks, in place (``t`` itself on a single rank)."""
    if ranks.world_size > 1:
        dist.all_reduce(t)
    return t


def average_buffers(model: nn.Module, ranks: Ranks) -> None:
    """Average BatchNorm running statistics over ranks, so every rank evaluates and saves the same model."""
    if ranks.world_size == 1:
        return
    for buf in model.buffers():
        if buf.is_floating_point():
            dist.all_reduce(buf)
            buf.div_(ranks.world_size)


def autocast(device: torch.device, bf16: bool) -> torch.autocast:
    """The context of a forward pass: bf16 autocast on ``device`` when ``bf16``, else full precision."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)
