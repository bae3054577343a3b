"""Shapes-10: a procedurally generated image classification dataset that needs no download.

Ten classes of simple shapes (circle, square, triangle, ring, plus, cross, diamond, horizontal
bar, vertical bar, hollow square) drawn at a random position, size and colour, with low contrast,
among small dots of clutter, on a random noisy background, 32x32. It is the training data of the zoo's embedded default model: small enough to
train on a CPU in minutes, hard enough that regularisation shows, and the same bytes everywhere
(generated from a seed with torch's CPU generator).
"""

from __future__ import annotations

import math

import torch
from torch.utils.data import Dataset

from ..categories import SHAPES10 as CLASSES

SIZE = 32
TRAIN_SIZE, TEST_SIZE = 3000, 2000
DISTRACTORS = 3
_SPLIT_SEEDS = {"train": 1, "test": 2}


def _masks(dx: torch.Tensor, dy: torch.Tensor, r: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Boolean masks (N, H, W) of each sample's shape, from offsets to its centre and its radius."""
    dist = (dx**2 + dy**2).sqrt()
    box = torch.maximum(dx.abs(), dy.abs())
    u, v = (dx + dy) / math.sqrt(2), (dx - dy) / math.sqrt(2)
    thin = 0.32 * r
    shapes = torch.stack([
        dist < r,
        box < 0.85 * r,
        (dy <= 0.75 * r) & (dx.abs() <= 0.62 * (dy + r)),
        (dist < r) & (dist > 0.55 * r),
        ((dx.abs() < thin) & (dy.abs() < r)) | ((dy.abs() < thin) & (dx.abs() < r)),
        ((u.abs() < thin) & (v.abs() < r)) | ((v.abs() < thin) & (u.abs() < r)),
        dx.abs() + dy.abs() < 1.1 * r,
        (dy.abs() < thin) & (dx.abs() < 1.15 * r),
        (dx.abs() < thin) & (dy.abs() < 1.15 * r),
        (box < 0.9 * r) & (box > 0.55 * r),
    ], dim=1)
    return shapes[torch.arange(len(labels)), labels]


def _layout(num_samples: int, seed: int) -> tuple[torch.Generator, torch.Tensor, torch.Tensor]:
    """The generator after the first draws, the labels (balanced over the classes) and each shape's mask (N, 1, H, W)."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(num_samples) % len(CLASSES)
    labels = labels[torch.randperm(num_samples, generator=g)]
    r = 4.5 + 5.5 * torch.rand(num_samples, 1, 1, generator=g)
    centre = r.squeeze(-1) + (SIZE - 2 * r.squeeze(-1)) * torch.rand(num_samples, 2, generator=g)
    coords = torch.arange(SIZE, dtype=torch.float32) + 0.5
    dx = coords.view(1, 1, SIZE) - centre[:, 0].view(-1, 1, 1)
    dy = coords.view(1, SIZE, 1) - centre[:, 1].view(-1, 1, 1)
    return g, labels, _masks(dx, dy, r, labels).unsqueeze(1)


def make_shapes(num_samples: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``num_samples`` uint8 images (N, 3, 32, 32) and their labels, balanced over the ten classes."""
    g, labels, mask = _layout(num_samples, seed)
    coords = torch.arange(SIZE, dtype=torch.float32) + 0.5
    background = torch.rand(num_samples, 3, 1, 1, generator=g)
    shift = 0.3 + 0.25 * torch.rand(num_samples, 3, 1, 1, generator=g)
    foreground = (background + torch.where(background > 0.5, -shift, shift)).clamp(0, 1)
    images = torch.where(mask, foreground, background).expand(-1, 3, -1, -1).clone()
    for _ in range(DISTRACTORS):  # small dots of random colour: clutter that no class is about
        spot = 1 + 2 * torch.rand(num_samples, 1, 1, generator=g)
        at = SIZE * torch.rand(num_samples, 2, generator=g)
        near = (coords.view(1, 1, SIZE) - at[:, 0].view(-1, 1, 1)) ** 2 + (coords.view(1, SIZE, 1) - at[:, 1].view(-1, 1, 1)) ** 2 < spot**2
        images = torch.where(near.unsqueeze(1), torch.rand(num_samples, 3, 1, 1, generator=g), images)
    images = images + 0.1 * torch.randn(num_samples, 3, SIZE, SIZE, generator=g)
    return (images.clamp(0, 1) * 255).round().to(torch.uint8), labels


class Shapes(Dataset):
    """The ``train`` (3,000 images) or ``test`` (2,000 images) split of Shapes-10, as (uint8 CHW image, label).

    ``size`` draws a split of another size from the same generator (the demo's quick training run).
    """

    def __init__(self, split: str = "train", size: int = 0) -> None:
        if split not in _SPLIT_SEEDS:
            raise ValueError(f"Shapes-10 has the splits 'train' and 'test', not {split!r}.")
        default = TRAIN_SIZE if split == "train" else TEST_SIZE
        self.seed = _SPLIT_SEEDS[split]
        self.images, self.targets = make_shapes(size or default, self.seed)
        self.classes = list(CLASSES)

    def shape_masks(self) -> torch.Tensor:
        """Where each image's shape is: (N, H, W) booleans, from the same draws as the images (the localization benchmark's truth)."""
        return _layout(len(self.targets), self.seed)[2].squeeze(1)

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.images[index], int(self.targets[index])
