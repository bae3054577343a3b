"""What a training run holds between its steps (:class:`Run`): what it trains and how, fixed when it starts, and
where it stands, which every step, evaluation and checkpoint moves on.

:func:`.loop.setup` builds it; the loop and :mod:`.failures` read it.
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from ..recipes import Recipe
from .config import ModelSpec
from .data import EpochSampler
from .dataspec import DataSpec, Inputs
from .finetune import Init
from .metrics_log import MetricsLog
from .mixing import BatchMixer, DropBlock
from .ranks import Ranks
from .streams import ShardStream


@dataclass(kw_only=True)
class Run:
    """Everything a training run holds between its steps, built by keyword.

    What is trained, fixed for the run: the parsed ``args``, the resolved ``recipe`` and model ``spec``, the run's
    ``name`` and ``method``, its ``output`` folder, ``init`` (the zoo model ``--init`` started from) and ``inputs``
    (what the model is fed). How this process runs it: ``ranks``, ``bf16`` autocast, ``channels_last``, ``compiled``
    (the step under torch.compile). Its data (``steps`` per epoch) and what it trains: ``model`` is what the steps
    call (DistributedDataParallel and/or compiled), ``module`` the plain network inside, whose weights are evaluated,
    checkpointed and exported, ``frozen`` the modules of the levels ``--freeze-stages`` froze, kept in eval mode.

    Where it stands: ``start_epoch`` and ``start_step`` are where training begins (past 0 when resumed), ``best`` the
    best validation epoch so far, ``partial`` this epoch's training metrics so far on this rank (loss sum, top-1
    misses, top-5 misses, images), on the device, and ``saved`` the (epoch, step) of the checkpoint in ``output``
    (None before this run wrote or resumed one). The sampler's position and the RNG states move with the steps too.
    """

    # What is trained, fixed for the run
    args: argparse.Namespace
    recipe: Recipe
    spec: ModelSpec
    name: str
    method: str
    output: Path
    init: Init | None = None
    inputs: Inputs | None = None
    # How this process runs it
    ranks: Ranks
    bf16: bool
    channels_last: bool
    compiled: bool = False
    # The data
    data: DataSpec
    sampler: EpochSampler | ShardStream
    train_loader: DataLoader
    val_loader: DataLoader
    steps: int
    # What it trains
    model: nn.Module
    module: nn.Module
    optimizer: torch.optim.Optimizer
    mixer: BatchMixer
    dropblock: DropBlock | None
    frozen: list[nn.Module] = dataclasses.field(default_factory=list)
    log: MetricsLog
    # Where it stands
    start_epoch: int
    start_step: int
    best: dict[str, Any]
    partial: torch.Tensor
    saved: tuple[int, int] | None = None

    @property
    def per_rank_batch(self) -> int:
        """Images per step on this rank: the global batch split evenly over the ranks."""
        return self.recipe.batch_size // self.ranks.world_size
