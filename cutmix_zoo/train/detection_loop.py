"""The detection training run, top to bottom, on the classifier's machinery: :func:`run_detection` reads as its phases
(setup, then each epoch's steps, evaluation and atomic checkpoint, then the export), with the ranks, checkpoints, stops
and log of :mod:`.ranks`, :mod:`.checkpoint`, :mod:`.failures` and :mod:`.metrics_log`.

Under ``torchrun`` every rank runs this code on its share of the global batch (DistributedDataParallel, gloo on CPU,
NCCL on GPUs) and only rank 0 writes files. The global RNG (which the detectors' box sampling draws from) is seeded
once for the initial weights and then per rank; it is saved in every checkpoint with the sampler's position, so a
resumed run takes the same steps as one that never stopped.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader

from ..detection.data import DetectionDataError, DetectionSplit, default_splits, read_split
from ..detection.dataset import DetectionDataset
from ..detection.evaluate import DetectionMetrics
from ..detection.export import export_detector
from ..detection.models import build_detector
from ..errors import InvalidArgumentError, TrainingError
from . import checkpoint as ckpt
from . import failures
from .config import CHECKPOINT_NAME, EXPORT_DIR, check_free_space, check_output
from .data import DataError, EpochSampler
from .detection_data import EpochBatches, aspect_groups, evaluate_shared, train_loader
from .detection_run import DetectionRun, plain
from .failures import StopFlag
from .loop import checkpoint_bytes, parallel, weights_sha256
from .metrics_log import MetricsLog
from .ranks import Ranks, all_sum, autocast, setup_ranks


class DetectionInterrupted(TrainingError):
    """A run that SIGTERM (or Ctrl-C) stopped, its checkpoint saved: ``resume`` continues it."""


@dataclass(kw_only=True)
class DetectionState:
    """What a detection run holds between its steps: the ``run``, this process's ``ranks`` and numerics, the splits,
    the training data (``batches`` per epoch: ``steps``), ``model`` (what the steps call, DDP on several ranks) and
    ``module`` (the detector inside, evaluated, checkpointed and exported), and where it stands: ``start_epoch`` and
    ``start_step``, ``partial`` (the epoch's loss sum and steps so far), ``saved`` (the checkpoint's position) and
    ``metrics`` (the last evaluation). ``best`` is :mod:`.failures`' view: a detection run exports its last epoch and keeps
    no best weights."""

    run: DetectionRun
    output: Path
    ranks: Ranks
    bf16: bool
    train: DetectionSplit
    val: DetectionSplit
    val_name: str
    batches: EpochBatches
    loader: DataLoader
    steps: int
    model: nn.Module
    module: nn.Module
    optimizer: torch.optim.Optimizer
    log: MetricsLog
    start_epoch: int
    start_step: int
    partial: list[float]
    saved: tuple[int, int] | None
    best: dict[str, Any] = dataclasses.field(default_factory=lambda: {"epoch": -1})
    metrics: DetectionMetrics | None = None

    @property
    def per_rank_batch(self) -> int:
        """Images per step on this rank."""
        return self.run.batch_size // self.ranks.world_size


def run_detection(run: DetectionRun, checkpoint: dict[str, Any] | None) -> tuple[nn.Module, DetectionMetrics]:
    """Train ``run`` (from ``checkpoint`` when resumed); returns the detector on the CPU in eval mode and its last metrics."""
    # Setup: ranks, data, the model (the same initial weights on every rank), the resumed state, the log
    state = setup(run, checkpoint)
    with StopFlag() as stop:
        for epoch in range(state.start_epoch, run.epochs):
            # Train steps: from the resumed step; a stop asked for mid-epoch saves and raises DetectionInterrupted
            train_time = train_epoch(state, epoch, stop)
            # Evaluation: mAP on the val split, the epoch's log line
            evaluate_epoch(state, epoch, train_time)
            # Checkpoint: written atomically, the run as it starts the next epoch
            save_checkpoint(state, epoch + 1, 0)
            if epoch + 1 < run.epochs and stop.agreed(state.ranks):  # the last epoch finishes instead
                raise interrupted(state, epoch + 1, 0)
    # Finish: every rank's weight digest, the export
    return finish(state)


def read_splits(run: DetectionRun) -> tuple[DetectionSplit, DetectionSplit, str]:
    """The train and val splits (the val one read with the train one's classes) and the val split's name."""
    defaults = default_splits(run.data[0])
    train = read_split(run.data, run.train_split or defaults[0])
    val_name = run.val_split or defaults[1]
    return train, read_split(run.data, val_name, classes=train.classes), val_name


def setup(run: DetectionRun, checkpoint: dict[str, Any] | None) -> DetectionState:
    """Everything before the first step, in an order an exact resume depends on; every bad input (an unwritable
    --output, bad data, a batch that does not split over the ranks or outgrows the data) is refused here."""
    output, ranks = Path(run.output), setup_ranks(run.device)
    if ranks.is_main:
        check_output(output)
    bf16 = run.precision == "bf16" or (run.precision == "auto" and ranks.device.type == "cuda")
    if run.batch_size % ranks.world_size:
        raise InvalidArgumentError(f"--batch-size {run.batch_size} does not split evenly over {ranks.world_size} ranks.")
    train, val, val_name = read_splits(run)
    dataset = DetectionDataset(train, train=True, flip=run.flip, seed=run.seed)
    batches = EpochBatches(EpochSampler(dataset, ranks.world_size, ranks.rank, run.seed), run.batch_size // ranks.world_size,
                           aspect_groups(train, run.aspect_group_factor))
    if batches.steps == 0:
        raise InvalidArgumentError(f"The training split ({len(train.records)} images) is smaller than one per-rank batch of "
                                   f"{batches.batch_size}; lower --batch-size.")
    torch.manual_seed(run.seed)
    module = build_detector(run.init, len(train.classes), run.detector, run.freeze_stages, run.out_channels,
                            list(run.min_size) if not isinstance(run.min_size, int) else run.min_size, run.max_size,
                            pretrained=run.pretrained and checkpoint is None, **run.detector_kwargs).to(ranks.device)
    random.seed(run.seed + ranks.rank)
    torch.manual_seed(run.seed + ranks.rank)
    optimizer = torch.optim.SGD([p for p in module.parameters() if p.requires_grad], lr=run.lr, momentum=run.momentum,
                                weight_decay=run.weight_decay)
    if ranks.is_main:
        check_free_space(output, checkpoint_bytes(module))
    start_epoch, start_step, partial = restore(checkpoint, module, optimizer, ranks)
    state = DetectionState(run=run, output=output, ranks=ranks, bf16=bf16, train=train, val=val, val_name=val_name, batches=batches,
                           loader=train_loader(dataset, batches, run.workers, ranks.device.type == "cuda"), steps=batches.steps,
                           model=parallel(module, ranks, compile_model=False), module=module, optimizer=optimizer,
                           log=MetricsLog(output, ranks.is_main), start_epoch=start_epoch, start_step=start_step, partial=partial,
                           saved=None if checkpoint is None else (start_epoch, start_step))
    start_log(state)
    return state


def restore(checkpoint: dict[str, Any] | None, module: nn.Module, optimizer: torch.optim.Optimizer,
            ranks: Ranks) -> tuple[int, int, list[float]]:
    """Load a checkpoint's weights and momentum and, on as many ranks as it was written on, each rank's RNG states; returns
    where the run starts (epoch, step) and the epoch's partial loss. Without a checkpoint: the first step of a new run."""
    if checkpoint is None:
        return 0, 0, [0.0, 0.0]
    module.load_state_dict(checkpoint["model"])
    optimizer.load_state_dict(checkpoint["optimizer"])
    if len(checkpoint["ranks"]) == ranks.world_size:
        ckpt.set_rng_states(checkpoint["ranks"][ranks.rank]["rng"], ranks.device)
    return checkpoint["epoch"], checkpoint["step"], list(checkpoint["partial"])


def start_log(state: DetectionState) -> None:
    """Make the output folder (rank 0), carry a resumed run's files into it, and log the start; from here a log line that
    cannot be written stops the run with :func:`.failures.unwritable`'s sentence."""
    run, ranks = state.run, state.ranks
    state.log.failed = functools.partial(failures.unwritable, state)
    if ranks.is_main:
        state.output.mkdir(parents=True, exist_ok=True)
        if run.resume:
            ckpt.carry_run_files(Path(run.resume), state.output)
        state.log.write({"event": "start", "task": "detection", "init": os.fspath(run.init), "recipe": run.recipe,
                         "resumed_from": run.resume, "epoch": state.start_epoch, "step": state.start_step,
                         "world_size": ranks.world_size, "device": str(ranks.device), "bf16": state.bf16,
                         "classes": list(state.train.classes), "train_images": len(state.train.records),
                         "val_images": len(state.val.records), "dropped_boxes": state.train.dropped + state.val.dropped,
                         "run": plain(dataclasses.asdict(run))})


def train_epoch(state: DetectionState, epoch: int, stop: StopFlag) -> float:
    """Train ``epoch``'s steps (from ``start_step`` in the resumed epoch); returns their time in seconds. A stop asked for
    (all ranks agreeing, every step) saves a checkpoint at that step and raises :class:`DetectionInterrupted`; an image
    that cannot be decoded saves the steps done first, so ``resume`` continues once the file is replaced."""
    from tqdm import tqdm

    run, steps = state.run, state.steps
    first = state.start_step if epoch == state.start_epoch else 0
    if first == 0:
        state.partial = [0.0, 0.0]
    state.batches.set_position(epoch, first)
    state.model.train()
    bar = tqdm(total=steps, initial=first, desc=f"epoch {epoch + 1}/{run.epochs}", disable=not state.ranks.is_main or run.quiet,
               leave=False)
    started, step = time.perf_counter(), first
    try:
        for images, targets in state.loader:
            for group in state.optimizer.param_groups:
                group["lr"] = run.lr_at(epoch, step, steps)
            loss = train_step(state, images, targets, epoch, step)
            step += 1
            state.partial = [state.partial[0] + loss, state.partial[1] + 1]
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.3f}")
            if step < steps and stop.agreed(state.ranks):
                save_checkpoint(state, epoch, step)
                raise interrupted(state, epoch, step)
    except DetectionDataError as error:  # an unreadable image: keep the steps done, so resume continues
        save_checkpoint(state, epoch, step, alone=True)
        raise failures.stopped_by_data(state, DataError(str(error)), epoch, step) from None
    finally:
        bar.close()
    return time.perf_counter() - started


def train_step(state: DetectionState, images: list[torch.Tensor], targets: list[dict[str, torch.Tensor]], epoch: int,
               step: int) -> float:
    """One SGD step (the forward pass in bf16 autocast when the run computes in it); returns the loss averaged over the
    ranks, which is checked before the update (torchvision's reference stops on a non-finite loss there too)."""
    device = state.ranks.device
    images = [image.to(device, non_blocking=True) for image in images]
    targets = [{k: v.to(device, non_blocking=True) for k, v in target.items()} for target in targets]
    with autocast(device, state.bf16):
        losses = state.model(images, targets)
    loss = sum(losses.values())
    mean = float(all_sum(loss.detach().float().reshape(1).clone(), state.ranks)) / state.ranks.world_size
    failures.check_finite(state, "training loss", mean, f"epoch {epoch + 1}, step {step + 1}", epoch, step)
    state.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    state.optimizer.step()
    return mean


def evaluate_epoch(state: DetectionState, epoch: int, train_time: float) -> None:
    """After ``epoch``'s last step: mAP on the val split (shared over the ranks), logged and printed. A val image that
    cannot be decoded stops the run with a checkpoint of the epoch's training saved first (its evaluation runs on resume)."""
    run, ranks = state.run, state.ranks
    try:
        metrics = evaluate_shared(state.module, state.val, state.per_rank_batch, run.workers, ranks, state.bf16)
    except DetectionDataError as error:
        save_checkpoint(state, epoch, state.steps, alone=True)
        raise failures.stopped_by_data(state, DataError(str(error)), epoch, state.steps) from None
    state.metrics = metrics
    loss_sum, count = state.partial
    record = {"event": "epoch", "epoch": epoch, "lr": run.lr_at(epoch, state.steps - 1, state.steps),
              "train_loss": loss_sum / max(count, 1), "val_map": metrics.map, "val_map50": metrics.map50, "val_map75": metrics.map75,
              "seconds": train_time, "images_per_s": count * run.batch_size / max(train_time, 1e-9)}
    state.log.write(record, (epoch + 1) * state.steps)
    if ranks.is_main and not run.quiet:
        print(f"epoch {epoch + 1}/{run.epochs}: train loss {record['train_loss']:.4f}, val mAP@[.5:.95] {100 * metrics.map:.2f}, "
              f"mAP@0.5 {100 * metrics.map50:.2f}", flush=True)


def save_checkpoint(state: DetectionState, epoch: int, step: int, alone: bool = False) -> None:
    """Write OUTPUT/checkpoint.pt atomically (rank 0): the run continues at ``step`` of ``epoch``. A collective (every rank
    hands rank 0 its RNG states) unless ``alone``: then this rank writes by itself and the resume is not exact on several
    ranks. Weights holding a NaN or an infinity are never written: the run stops and the previous checkpoint stays."""
    failures.check_weights(state, epoch, step)
    mine = {"rng": ckpt.rng_states(state.ranks.device)}
    gathered: list[Any] = [mine] if state.ranks.world_size == 1 else []
    if state.ranks.world_size > 1 and not alone:
        gathered = [None] * state.ranks.world_size
        dist.all_gather_object(gathered, mine)
    if state.ranks.is_main or alone:
        path = state.output / CHECKPOINT_NAME
        metrics = None if state.metrics is None else state.metrics.as_dict()
        with failures.writing(state, path):
            ckpt.save_atomic({"version": 1, "kind": "detection", "run": plain(dataclasses.asdict(state.run)), "epoch": epoch,
                              "step": step, "partial": list(state.partial), "classes": list(state.train.classes),
                              "model": state.module.state_dict(), "optimizer": state.optimizer.state_dict(), "ranks": gathered,
                              "metrics": metrics}, path)
    state.saved = (epoch, step)


def interrupted(state: DetectionState, epoch: int, step: int) -> DetectionInterrupted:
    """Log the stop on request (its checkpoint just saved) and return the error that says how to continue."""
    failures.interrupted(state, epoch, step)
    return DetectionInterrupted(f"The run stopped on request: {failures.kept(state)}; continue it with --resume {state.output}.")


def finish(state: DetectionState) -> tuple[nn.Module, DetectionMetrics]:
    """After the last epoch: every rank's weight digest logged, the detector exported (rank 0) with the last epoch's
    metrics; returns it on the CPU in eval mode with them."""
    ranks, module = state.ranks, state.module
    metrics = state.metrics or evaluate_shared(module, state.val, state.per_rank_batch, state.run.workers, ranks, state.bf16)
    digests: list[Any] = [weights_sha256(module)]
    if ranks.world_size > 1:
        digests = [None] * ranks.world_size
        dist.all_gather_object(digests, weights_sha256(module))
    module.cpu()
    if ranks.is_main:
        export = state.output / EXPORT_DIR
        with failures.writing(state, export):
            export_detector(module, state.train.classes, export, os.fspath(state.run.init), metrics.as_dict(), state.val_name)
        state.log.write({"event": "end", "val_map": metrics.map, "val_map50": metrics.map50, "final_weights_sha256": digests,
                         "export": str(export)})
    if ranks.world_size > 1:
        dist.barrier()
    return module.eval(), metrics
