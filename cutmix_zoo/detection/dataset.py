"""A torch Dataset over a :class:`~cutmix_zoo.detection.data.DetectionSplit`, with the train-time augmentation of
torchvision's detection references: horizontal flip with its boxes and, for the ``multiscale`` policy, a random
shortest side (``RandomShortestSize``). The detector's own transform then resizes and normalises each image, as there.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from ..errors import InvalidArgumentError
from .data import DetectionDataError, DetectionSplit


def hflip(image: torch.Tensor, boxes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The image mirrored left to right and its xyxy boxes with it (x0' = W - x1, x1' = W - x0)."""
    width = image.shape[-1]
    return image.flip(-1), torch.stack([width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]], dim=1)


def resize_shortest(image: torch.Tensor, boxes: torch.Tensor, shortest: int, max_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Resize so that the short side is ``shortest`` and the long one at most ``max_size`` (torchvision's RandomShortestSize
    rule, bilinear with antialiasing), boxes scaled with the image."""
    from torchvision.transforms.v2 import functional as F

    height, width = image.shape[-2:]
    scale = min(shortest / min(height, width), max_size / max(height, width))
    new_h, new_w = round(height * scale), round(width * scale)
    resized = F.resize(image, [new_h, new_w], antialias=True)
    factors = torch.tensor([new_w / width, new_h / height, new_w / width, new_h / height])
    return resized, boxes * factors


def read_image(path: Path, image_id: int | None = None) -> torch.Tensor:
    """An image file as float RGB (3, H, W) in [0, 1]; a file that fails to decode is one sentence (naming ``image_id``)."""
    from PIL import Image
    from torchvision.transforms.v2.functional import pil_to_tensor

    try:
        with Image.open(path) as file:
            image = pil_to_tensor(file.convert("RGB"))
    except (OSError, SyntaxError, ValueError) as e:  # what PIL's decoders raise for a malformed file
        which = "" if image_id is None else f" (image id {image_id})"
        raise DetectionDataError(f"The image {path}{which} cannot be decoded ({e}).") from None
    return image.float().div_(255)


class DetectionDataset(Dataset):
    """(image, target) pairs for torchvision's detectors: a float (3, H, W) image in [0, 1] and ``{"boxes", "labels",
    "image_id"}`` holding the objects that train (crowd regions and difficult objects are left out, as torchvision's
    COCO reference drops crowds and the VOC code of Faster R-CNN leaves out difficult objects).

    With ``train`` each image is flipped with probability ``flip`` and, when ``scales`` is given, resized to a shortest
    side drawn from it (at most ``max_size`` long); the draws come from ``seed``, the epoch (:meth:`set_epoch`) and the
    index, so a run repeats exactly whatever the workers.
    """

    def __init__(self, split: DetectionSplit, train: bool = False, flip: float = 0.5, scales: Sequence[int] = (),
                 max_size: int = 1333, seed: int = 0) -> None:
        if not 0 <= flip <= 1:
            raise InvalidArgumentError(f"flip is a probability from 0 to 1, not {flip!r}.")
        if any(not isinstance(s, int) or s <= 0 for s in scales):
            raise InvalidArgumentError(f"scales must be positive integers (shortest sides in pixels), not {list(scales)!r}.")
        self.split, self.train, self.flip, self.scales, self.max_size, self.seed = split, train, flip, tuple(scales), max_size, seed
        self.classes = split.classes
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Draw the next epoch's augmentation (call before each epoch, as a DistributedSampler's set_epoch)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.split.records)

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The ``key``-th pair: an index (drawn with :meth:`set_epoch`'s epoch) or an ``(epoch, index)`` key, the form the
        trainer's samplers yield, so that loader processes that outlive an epoch still draw each epoch's augmentation."""
        epoch, index = key if isinstance(key, tuple) else (self.epoch, key)
        record = self.split.records[index]
        keep = ~record.ignored
        image, boxes, labels = read_image(record.image, record.image_id), record.boxes[keep], record.labels[keep]
        if self.train:
            g = torch.Generator().manual_seed((self.seed * 1_000_003 + epoch) * 1_000_003 + index)
            if self.flip and float(torch.rand((), generator=g)) < self.flip:
                image, boxes = hflip(image, boxes)
            if self.scales:
                shortest = self.scales[int(torch.randint(len(self.scales), (), generator=g))]
                image, boxes = resize_shortest(image, boxes, shortest, self.max_size)
        return image, {"boxes": boxes, "labels": labels, "image_id": torch.tensor(record.image_id)}


def collate(batch: Sequence[tuple[torch.Tensor, dict[str, Any]]]) -> tuple[list[torch.Tensor], list[dict[str, Any]]]:
    """Images and targets as two lists, the form torchvision's detectors take (images of different sizes stay apart)."""
    return [image for image, _ in batch], [target for _, target in batch]
