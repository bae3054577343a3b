"""Fine-tuning a detector on a COCO or VOC folder with the classifier's machinery: :class:`DetectionRun` says what is
trained and how the run runs, :func:`train_detector` runs it (one process, or every rank of a ``torchrun`` group:
DistributedDataParallel, gloo on CPU, NCCL on GPUs), :func:`describe_detection_run` is its ``--dry-run``.

A run writes ``OUTPUT/metrics.jsonl`` (a ``start`` line, an ``epoch`` line per epoch with ``val_map`` and
``val_map50``, an ``end`` line with every rank's weight digest), an atomic ``OUTPUT/checkpoint.pt`` after every epoch
(and where SIGTERM stops it), from which ``resume`` continues exactly, and at the end ``OUTPUT/export/`` for
:func:`~cutmix_zoo.detection.export.load_detector`. The loop itself is :mod:`.detection_loop`; the published settings
are :mod:`.detection_recipes` (:meth:`DetectionRun.from_recipe`).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

from torch import nn

from ..detection.evaluate import DetectionMetrics
from ..errors import InvalidArgumentError, WeightsError
from .checkpoint import load_checkpoint
from .config import CHECKPOINT_NAME, EXPORT_DIR, METRICS
from .detection_loop import DetectionInterrupted, run_detection
from .detection_run import RESUMABLE, DetectionRun, check_detection_run, flag, plain

__all__ = ["DetectionInterrupted", "DetectionRun", "describe_detection_run", "resumed_run", "train_detector"]


def resumed_run(checkpoint: dict[str, Any], run: DetectionRun) -> DetectionRun:
    """``run`` checked against the run of the ``checkpoint`` it resumes: a field that would change what is trained is one
    sentence naming its flag (the fields of :data:`~.detection_run.RESUMABLE` may change), as are fewer epochs than the
    checkpoint has trained and a checkpoint that no detection run wrote."""
    saved = checkpoint.get("run")
    if not isinstance(saved, dict) or checkpoint.get("kind") != "detection":
        raise WeightsError(f"{run.resume} is not a checkpoint of cutmix-zoo detect train: resume a detection run's output folder.")
    for f in dataclasses.fields(DetectionRun):
        given = getattr(run, f.name)
        if f.name in RESUMABLE or (f.name == "recipe" and given is None):
            continue
        if plain(given) != plain(saved.get(f.name)):
            raise InvalidArgumentError(
                f"{flag(f.name)} cannot change when resuming {run.resume} (the run trains with {saved.get(f.name)!r}, not "
                f"{given!r}): resuming continues the same training, so start a new run with another --output instead.")
    if run.epochs < checkpoint["epoch"]:
        raise InvalidArgumentError(f"--epochs {run.epochs} is fewer than the {checkpoint['epoch']} epochs {run.resume} has trained.")
    return run


def describe_detection_run(run: DetectionRun) -> dict[str, Any]:
    """The resolved run as plain data (what ``--dry-run`` prints, reading no data): every value, where the recipe's come
    from, the learning rate of each epoch after its warm-up, how it runs and the files it writes."""
    from ..api import resolve_config
    from .detection_recipes import RECIPES

    check_detection_run(run)
    backbone = resolve_config(run.init)
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    recipe = RECIPES.get(run.recipe or "")
    output = Path(run.output)
    return {
        "run": plain(asdict(run)),
        "recipe": None if recipe is None else {"name": recipe.name, "summary": recipe.summary, "sources": recipe.sources},
        "backbone": {"name": backbone.name, "family": backbone.family, "architecture": backbone.architecture},
        "lr_per_epoch": [run.lr_at(epoch, 0, 1) for epoch in range(run.epochs)],
        "warmup": f"linear from lr x {run.warmup_factor} over the first min({run.warmup_steps}, steps per epoch - 1) steps",
        "world_size": world_size, "per_rank_batch": run.batch_size / world_size,
        "outputs": {"checkpoint": str(output / CHECKPOINT_NAME), "metrics": str(output / METRICS), "export": str(output / EXPORT_DIR)},
    }


def train_detector(run: DetectionRun) -> tuple[nn.Module, DetectionMetrics]:
    """Fine-tune ``run``'s detector, evaluating after each epoch; returns it (on the CPU, in eval mode, as exported) and the
    last epoch's metrics. Stopped by SIGTERM or Ctrl-C, it saves its checkpoint and raises :class:`DetectionInterrupted`
    (``resume=OUTPUT`` continues it); a failure keeps the last checkpoint and is one sentence."""
    check_detection_run(run)
    checkpoint = load_checkpoint(run.resume, settings="run") if run.resume else None
    if checkpoint is not None:
        resumed_run(checkpoint, run)
    return run_detection(run, checkpoint)
