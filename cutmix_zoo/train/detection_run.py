"""What a detection fine-tuning run is (:class:`DetectionRun`) and the values it refuses before anything starts."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from ..detection.models import DETECTORS
from ..errors import InvalidArgumentError
from .detection_recipes import detection_recipe


@dataclass
class DetectionRun:
    """What a detection fine-tuning run is (the init, the data, the recipe's values) and how it runs (output, device,
    workers, precision, resume). The defaults are torchvision's COCO reference optimizer (lr 0.02 for 16 images scaled
    to a batch of 2, momentum 0.9, weight decay 1e-4, linear warm-up from lr x 0.001 within the first epoch) for one
    epoch; :meth:`from_recipe` takes a whole published setting. ``lr_milestones`` are epochs where the rate is multiplied
    by ``lr_gamma``; ``aspect_group_factor`` groups batches by aspect ratio as torchvision does (-1: off); a sequence
    ``min_size`` draws one per image in training (multi-scale) and evaluates at its last. ``device`` "auto" is cuda when
    there is one; ``precision`` "auto" is bf16 autocast on cuda and fp32 on the CPU. ``resume`` (a checkpoint or an
    output folder) continues a run: every field but those of :data:`RESUMABLE` must be the checkpoint's. ``quiet=False``
    shows a progress bar and prints a line per epoch (``detect train`` does, unless ``--quiet``)."""

    init: str
    data: Sequence[str]
    output: str
    detector: str = "faster_rcnn"
    epochs: int = 1
    batch_size: int = 2
    lr: float = 0.0025  # torchvision's 0.02 for 16 images, scaled linearly to the batch
    momentum: float = 0.9
    weight_decay: float = 1e-4
    warmup_steps: int = 1000
    seed: int = 0
    device: str = "cpu"
    workers: int = 0
    freeze_stages: int = 2
    out_channels: int = 256
    min_size: int | Sequence[int] = 800
    max_size: int = 1333
    pretrained: bool = True
    train_split: str | None = None
    val_split: str | None = None
    detector_kwargs: dict[str, Any] = field(default_factory=dict)
    lr_milestones: Sequence[int] = ()
    lr_gamma: float = 0.1
    warmup_factor: float = 0.001
    aspect_group_factor: int = -1
    flip: float = 0.5
    precision: str = "auto"
    recipe: str | None = None
    resume: str | None = None
    quiet: bool = True  # the API prints nothing; the command line shows a progress bar and a line per epoch

    @classmethod
    def from_recipe(cls, name: str, **fields: Any) -> DetectionRun:
        """A run of the recipe ``name`` (``coco_faster_rcnn``, ``voc_paper``, ``scenes``) with ``fields`` (init, data,
        output, and any value to change); its learning rate is scaled to ``batch_size`` unless ``lr`` is given."""
        values = detection_recipe(name).run_fields(fields.get("batch_size"))
        return cls(**{**values, **fields})

    def lr_at(self, epoch: int, step: int, steps: int) -> float:
        """The learning rate of ``step`` (0-based) of ``epoch`` in an epoch of ``steps``: ``lr`` times ``lr_gamma`` per
        milestone passed, warmed up linearly from ``warmup_factor`` over the first ``min(warmup_steps, steps - 1)``
        steps (torchvision's reference: LinearLR within the first epoch)."""
        lr = self.lr * self.lr_gamma ** sum(epoch >= m for m in self.lr_milestones)
        warmup, done = min(self.warmup_steps, steps - 1), epoch * steps + step
        if done < warmup:
            lr *= self.warmup_factor + (1 - self.warmup_factor) * done / warmup
        return lr


# Fields a resumed run may change: where its files are and how this process runs, not what is trained.
RESUMABLE = ("output", "data", "epochs", "device", "workers", "precision", "resume", "quiet")
FLAGS = {"pretrained": "--from-scratch", "val_split": "--val-split-name", "detector_kwargs": "detector_kwargs"}


def flag(name: str) -> str:
    """The command-line flag of a DetectionRun field."""
    return FLAGS.get(name, "--" + name.replace("_", "-"))


def plain(value: Any) -> Any:
    """``value`` with tuples as lists: how a field compares once it went through a checkpoint or JSON."""
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


def check_detection_run(run: DetectionRun) -> None:
    """Refuse values that cannot train, each with one sentence, before any data is read."""
    sizes = [run.min_size] if isinstance(run.min_size, int) else list(run.min_size)
    finite = {"--lr": run.lr, "--momentum": run.momentum, "--weight-decay": run.weight_decay, "--lr-gamma": run.lr_gamma,
              "--warmup-factor": run.warmup_factor, "--flip": run.flip}
    problems = [(not isinstance(v, (int, float)) or not math.isfinite(v), f"{k} must be a finite number, not {v!r}") for k, v in finite.items()]
    problems += [
        (not run.data, "--data must name at least one COCO or VOC folder"),
        (run.detector not in DETECTORS, f"--detector must be one of {', '.join(DETECTORS)}, not {run.detector!r}"),
        (not isinstance(run.epochs, int) or run.epochs < 1, f"--epochs must be a positive integer, not {run.epochs!r}"),
        (not isinstance(run.batch_size, int) or run.batch_size < 1, f"--batch-size must be a positive integer, not {run.batch_size!r}"),
        (run.lr <= 0, f"--lr must be positive, not {run.lr}"),
        (not 0 <= run.momentum < 1, f"--momentum must be in [0, 1), not {run.momentum}"),
        (run.weight_decay < 0, f"--weight-decay must be 0 or more, not {run.weight_decay}"),
        (not 0 < run.lr_gamma <= 1, f"--lr-gamma must be in (0, 1], not {run.lr_gamma}"),
        (not 0 < run.warmup_factor <= 1, f"--warmup-factor must be in (0, 1], not {run.warmup_factor}"),
        (run.warmup_steps < 0, f"--warmup-steps must be 0 or more, not {run.warmup_steps}"),
        (any(not isinstance(m, int) or m < 1 for m in run.lr_milestones) or list(run.lr_milestones) != sorted(set(run.lr_milestones)),
         f"--lr-milestones are increasing epochs of 1 or more, not {list(run.lr_milestones)}"),
        (not 0 <= run.flip <= 1, f"--flip is a probability from 0 to 1, not {run.flip}"),
        (run.aspect_group_factor < -1, f"--aspect-group-factor must be -1 (off) or more, not {run.aspect_group_factor}"),
        (not sizes or any(not isinstance(s, int) or s < 1 for s in [*sizes, run.max_size]),
         f"--min-size and --max-size must be positive pixel counts, not {run.min_size!r} and {run.max_size!r}"),
        (run.workers < 0, f"--workers must be 0 or more, not {run.workers}"),
        (run.precision not in ("auto", "bf16", "fp32"), f"--precision must be auto, bf16 or fp32, not {run.precision!r}"),
    ]
    for bad, message in problems:
        if bad:
            raise InvalidArgumentError(message + ".")
    try:
        kind = "cpu" if run.device == "auto" else torch.device(run.device).type
    except RuntimeError:
        raise InvalidArgumentError(f"--device {run.device!r} is not a torch device; use auto, cpu, cuda or cuda:N.") from None
    if kind not in ("cpu", "cuda"):
        raise InvalidArgumentError(f"--device {run.device!r} is not one the trainer runs on; use auto, cpu, cuda or cuda:N.")
