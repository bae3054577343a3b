"""What a data source hands the training loop, and how a sample's augmentation is seeded.

Both data pipelines build on this module: the CPU one (:mod:`.data`: PIL in the loader workers)
and the device one (:mod:`.gpu_decode`: ``--decode gpu``). :mod:`.data` chooses between them and
imports :mod:`.gpu_decode`; :mod:`.gpu_decode` imports only this, so the two never import each other.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Iterator, Sized
from dataclasses import dataclass
from typing import Any, cast

import torch
from torch.utils.data import Dataset

from ..errors import ZooError


class DataError(ZooError, OSError):
    """A data folder that is missing, unreadable or not in the layout the chosen dataset needs, or an image in it that
    cannot be read.

    Raised in a DataLoader worker, it reaches the training process rebuilt from the worker's whole traceback
    ("Caught DataError in DataLoader worker process 0. Original Traceback ..."); only its own sentence, the
    traceback's last line, is kept, so it stays one line wherever it was raised.
    """

    def __init__(self, message: str) -> None:
        lines = str(message).strip().splitlines()
        if len(lines) > 1 and lines[0].startswith("Caught ") and "DataLoader worker" in lines[0]:
            message = lines[-1].split(": ", 1)[-1]
        super().__init__(message)


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """The seed of one sample's random augmentation: the same in any worker, rank or resumed run.

    torch's CPU generator keeps only the low 32 bits of a seed, so the key is hashed into 32 bits; packing
    it into a wider integer would give an image the same augmentation in every epoch and under every seed.
    """
    return int.from_bytes(hashlib.blake2b(f"{seed}:{epoch}:{index}".encode(), digest_size=4).digest(), "little")


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Inside the block, torch's default CPU generator starts from ``seed``; after it, the caller's state is back.

    Only the CPU generator: ``torch.manual_seed`` also queues a seed for every CUDA, XPU and MTIA device, each with a
    formatted stack trace, which cost a loader worker more than the sample's whole augmentation draw. The draws on the
    CPU are the same as after ``torch.manual_seed``.
    """
    generator = torch.random.default_generator
    state = generator.get_state()
    generator.manual_seed(seed)
    try:
        yield
    finally:
        generator.set_state(state)


def dataset_size(dataset: Dataset) -> int:
    """``len(dataset)``: torch's ``Dataset`` declares no ``__len__``, and every dataset a run reads has one."""
    return len(cast(Sized, dataset))


def to_device(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A loader's image batch on the device (the inputs are ready; only the copy is left)."""
    return x.to(device, non_blocking=True)


@dataclass(frozen=True)
class Inputs:
    """What a run's model is fed: the crop ``size``, the normalisation, and the evaluation's shorter-side ``resize``
    (with the ``interpolation`` and ``crop_pct`` an export records)."""

    size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    resize: int
    interpolation: str = "bilinear"
    crop_pct: float = 1.0


@dataclass
class DataSpec:
    """The datasets of a run, what the model needs to know about them, and how a loader's batch becomes model input.

    ``classes`` are a folder's class names (None where the registry knows them); ``collate`` (None: torch's default)
    batches samples in the workers; ``train_to_device`` and ``val_to_device`` finish a batch on the device (with
    ``--decode gpu``: decode and augment there).
    """

    train: Dataset
    val: Dataset
    num_classes: int
    registry_dataset: str
    classes: list[str] | None = None
    collate: Callable | None = None
    train_to_device: Callable[[Any, torch.device], torch.Tensor] = to_device
    val_to_device: Callable[[Any, torch.device], torch.Tensor] = to_device
