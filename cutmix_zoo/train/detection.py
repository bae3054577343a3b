"""A short, single-process fine-tuning loop for a detector on a COCO or VOC folder: SGD with torchvision's reference
warm-up, mAP on the val split after every epoch (``metrics.jsonl``), an atomic ``checkpoint.pt`` every epoch, and the
last epoch exported to ``OUTPUT/export/`` for :func:`~cutmix_zoo.detection.export.load_detector`.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from ..detection.data import DetectionSplit, default_splits, read_split
from ..detection.dataset import DetectionDataset, collate
from ..detection.evaluate import DetectionMetrics, evaluate_model
from ..detection.export import export_detector
from ..detection.models import build_detector
from ..errors import InvalidArgumentError, TrainingError
from ..files import atomic_path


@dataclass
class DetectionRun:
    """What a detection fine-tuning run is: the init, the data and the recipe (SGD values of torchvision's COCO
    reference: lr 0.02 for 16 images, momentum 0.9, weight decay 1e-4, linear warm-up from lr/1000 over 1000 steps)."""

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
    min_size: int | list[int] = 800
    max_size: int = 1333
    pretrained: bool = True
    train_split: str | None = None
    val_split: str | None = None
    detector_kwargs: dict[str, Any] = field(default_factory=dict)


def _splits(run: DetectionRun) -> tuple[DetectionSplit, DetectionSplit, str]:
    """The train and val splits (the val one read with the train one's classes) and the val split's name."""
    defaults = default_splits(run.data[0])
    train = read_split(run.data, run.train_split or defaults[0])
    val_name = run.val_split or defaults[1]
    return train, read_split(run.data, val_name, classes=train.classes), val_name


def _train_epoch(model: nn.Module, loader: DataLoader, optimizer: torch.optim.Optimizer, run: DetectionRun, step: int) -> tuple[float, int]:
    """One epoch of SGD steps (warm-up by step); the mean loss and the step count after it. A non-finite loss stops the run."""
    model.train()
    total, count = 0.0, 0
    for images, targets in loader:
        warm = min(1.0, (step + 1) / run.warmup_steps) if run.warmup_steps else 1.0
        for group in optimizer.param_groups:
            group["lr"] = run.lr * (0.001 + 0.999 * warm)
        losses = model([i.to(run.device) for i in images], [{k: v.to(run.device) for k, v in t.items()} for t in targets])
        loss = sum(losses.values())
        if not torch.isfinite(loss):
            raise TrainingError(f"The loss became {float(loss)} at step {step}; lower --lr (now {run.lr}) and start again.")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total, count, step = total + float(loss.detach()), count + 1, step + 1
    return total / max(count, 1), step


def save_checkpoint(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, epoch: int, step: int, run: DetectionRun) -> None:
    """Write ``checkpoint.pt`` atomically: weights, optimizer state, the epoch and step done, and the run's settings."""
    with atomic_path(path, fsync=True) as tmp:
        torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch, "step": step,
                    "run": asdict(run)}, tmp)


def train_detector(run: DetectionRun) -> tuple[nn.Module, DetectionMetrics]:
    """Fine-tune ``run``'s detector, evaluating after each epoch; returns it (on the CPU, in eval mode, as exported) and the
    last epoch's metrics."""
    if not isinstance(run.epochs, int) or run.epochs < 1:
        raise InvalidArgumentError(f"epochs must be a positive integer, not {run.epochs!r}.")
    output = Path(run.output)
    output.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(run.seed)
    train, val, val_name = _splits(run)
    model = build_detector(run.init, len(train.classes), run.detector, run.freeze_stages, run.out_channels, run.min_size,
                           run.max_size, pretrained=run.pretrained, **run.detector_kwargs).to(run.device)
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=run.lr, momentum=run.momentum,
                                weight_decay=run.weight_decay)
    dataset = DetectionDataset(train, train=True, seed=run.seed)
    loader = DataLoader(dataset, batch_size=run.batch_size, shuffle=True, num_workers=run.workers, collate_fn=collate,
                        generator=torch.Generator().manual_seed(run.seed))
    step = 0
    for epoch in range(run.epochs):
        dataset.set_epoch(epoch)
        start = time.perf_counter()
        loss, step = _train_epoch(model, loader, optimizer, run, step)
        metrics = evaluate_model(model, val, run.batch_size, run.device, run.workers)
        line = {"epoch": epoch + 1, "train_loss": loss, "val_map": metrics.map, "val_map50": metrics.map50, "val_map75": metrics.map75,
                "seconds": time.perf_counter() - start}
        with open(output / "metrics.jsonl", "a") as f:
            f.write(json.dumps(line) + "\n")
        save_checkpoint(output / "checkpoint.pt", model, optimizer, epoch + 1, step, run)
    export_detector(model.cpu(), train.classes, output / "export", os.fspath(run.init), metrics.as_dict(), val_name)
    return model.eval(), metrics
