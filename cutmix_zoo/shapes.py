"""Shapes-10 and Novel-Shapes: procedurally generated image classification datasets that need no download.

Ten classes of simple shapes (circle, square, triangle, ring, plus, cross, diamond, horizontal
bar, vertical bar, hollow square) drawn at a random position, size and colour, with low contrast,
among small dots of clutter, on a random noisy background, 32x32. It is the training data of the zoo's embedded default model: small enough to
train on a CPU in minutes, hard enough that regularisation shows, and the same bytes everywhere
(generated from a seed with torch's CPU generator).

Novel-Shapes draws ten other shapes (star, crescent, ellipse, ...) the same way: a transfer task whose
classes the embedded models never saw, written as an ImageFolder tree by :func:`write_folder`
(``cutmix-zoo shapes DIR --novel``) for the fine-tuning and transfer commands.

Glyphs (``glyphs=True``) draws ten orientation-sensitive classes the same way: five arrow- and letter-like shapes and
their mirror images, each class's horizontal flip being another class (as with text, digits and arrows), the data on
which a flip augmentation hurts.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch
from torch.utils.data import Dataset

from .categories import NOVEL_SHAPES
from .categories import SHAPES10 as CLASSES

SIZE = 32
TRAIN_SIZE, TEST_SIZE = 3000, 2000
DISTRACTORS = 3
_SPLIT_SEEDS = {"train": 1, "test": 2}
# Glyphs: five shapes, each followed by its mirror image (left/right), so flipping an image swaps classes 2k and 2k+1.
GLYPHS = ("arrow left", "arrow right", "l-glyph", "j-glyph", "b-glyph", "d-glyph", "flag right", "flag left",
          "seven", "mirrored seven")


def _masks(dx: torch.Tensor, dy: torch.Tensor, r: torch.Tensor, labels: torch.Tensor, novel: bool = False,
           glyphs: bool = False) -> torch.Tensor:
    """Boolean masks (N, H, W) of each sample's shape, from offsets to its centre and its radius."""
    if glyphs:
        return glyph_masks(dx, dy, r, labels)
    if novel:
        return novel_shape_masks(dx, dy, r, labels)
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


def novel_shape_masks(dx: torch.Tensor, dy: torch.Tensor, r: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Masks of the ten Novel-Shapes classes (``categories.NOVEL_SHAPES``, in that order), none of them a Shapes-10 shape,
    from offsets to each shape's centre (broadcastable to (N, H, W)) and its radius (N, 1, 1); detection scenes draw with it too."""
    dist = (dx**2 + dy**2).sqrt()
    angle = torch.atan2(dy, dx)
    thin = 0.28 * r
    shapes = torch.stack([
        dist < r * (0.6 + 0.4 * torch.cos(5 * angle)),
        (dist < r) & ((dx - 0.45 * r) ** 2 + dy**2 > (0.8 * r) ** 2),
        (dx / r) ** 2 + (dy / (0.5 * r)) ** 2 < 1,
        ((dx > -0.8 * r) & (dx < -0.8 * r + 2 * thin) & (dy.abs() < 0.9 * r)) | ((dy < 0.9 * r) & (dy > 0.9 * r - 2 * thin) & (dx.abs() < 0.8 * r)),
        ((dy > -0.9 * r) & (dy < -0.9 * r + 2 * thin) & (dx.abs() < 0.9 * r)) | ((dx.abs() < thin) & (dy.abs() < 0.9 * r)),
        ((dy > -r) & (dy <= 0) & (dx.abs() <= 0.9 * (dy + r))) | ((dx.abs() < thin) & (dy > 0) & (dy < r)),
        torch.maximum(0.866 * dx.abs() + 0.5 * dy.abs(), dy.abs()) < 0.9 * r,
        (dist < r) & (dy < 0.2 * r),
        (dx.abs() <= dy.abs()) & (dy.abs() < 0.9 * r),
        ((dx - 0.5 * r) ** 2 + dy**2 < (0.42 * r) ** 2) | ((dx + 0.5 * r) ** 2 + dy**2 < (0.42 * r) ** 2),
    ], dim=1)
    return shapes[torch.arange(len(labels)), labels]


def _glyph(dx: torch.Tensor, dy: torch.Tensor, r: torch.Tensor, kind: int) -> torch.Tensor:
    """The mask of the ``kind``-th of the five glyphs in one orientation (its mirror image: the same with ``-dx``)."""
    thin = 0.28 * r
    if kind == 0:  # an arrow: a triangular head on the left, a shaft to the right
        head = (dx < -0.1 * r) & (dx > -r) & (dy.abs() < 0.8 * (dx + r))
        return head | ((dx >= -0.1 * r) & (dx < r) & (dy.abs() < thin))
    if kind == 1:  # an L: a bar down the left side, a foot to the right
        return ((dx > -0.7 * r) & (dx < -0.7 * r + 2 * thin) & (dy.abs() < r)) | ((dy < r) & (dy > r - 2 * thin) & (dx > -0.7 * r) & (dx < 0.8 * r))
    if kind == 2:  # a b: a tall bar on the left, a ring on its lower right
        ring = ((dx - 0.25 * r) ** 2 + (dy - 0.35 * r) ** 2).sqrt()
        return ((dx > -0.75 * r) & (dx < -0.75 * r + 2 * thin) & (dy.abs() < r)) | ((ring < 0.62 * r) & (ring > 0.3 * r))
    if kind == 3:  # a flag: a pole on the left, a triangle flying to the right from its top
        pole = (dx > -0.7 * r) & (dx < -0.7 * r + 2 * thin) & (dy.abs() < r)
        return pole | ((dx >= -0.7 * r) & (dx < 0.9 * r) & (dy > -r) & (dy < -r + 1.1 * r * (1 - (dx + 0.7 * r) / (1.6 * r))))
    # a 7: a bar along the top, a diagonal from its right end down to the bottom left
    return ((dy > -r) & (dy < -r + 2 * thin) & (dx.abs() < 0.8 * r)) | (((dx + 0.5 * dy).abs() < thin) & (dy.abs() < r))


def glyph_masks(dx: torch.Tensor, dy: torch.Tensor, r: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Masks of the ten Glyphs classes (``GLYPHS``, in that order): glyph ``k // 2``, mirrored for odd ``k``."""
    shapes = torch.stack([_glyph(sign * dx, dy, r, k) for k in range(5) for sign in (1, -1)], dim=1)
    return shapes[torch.arange(len(labels)), labels]


def _layout(num_samples: int, seed: int, novel: bool = False, glyphs: bool = False) -> tuple[torch.Generator, torch.Tensor, torch.Tensor]:
    """The generator after the first draws, the labels (balanced over the classes) and each shape's mask (N, 1, H, W)."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(num_samples) % len(CLASSES)
    labels = labels[torch.randperm(num_samples, generator=g)]
    r = 4.5 + 5.5 * torch.rand(num_samples, 1, 1, generator=g)
    centre = r.squeeze(-1) + (SIZE - 2 * r.squeeze(-1)) * torch.rand(num_samples, 2, generator=g)
    coords = torch.arange(SIZE, dtype=torch.float32) + 0.5
    dx = coords.view(1, 1, SIZE) - centre[:, 0].view(-1, 1, 1)
    dy = coords.view(1, SIZE, 1) - centre[:, 1].view(-1, 1, 1)
    return g, labels, _masks(dx, dy, r, labels, novel, glyphs).unsqueeze(1)


def make_shapes(num_samples: int, seed: int, novel: bool = False, glyphs: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """``num_samples`` uint8 images (N, 3, 32, 32) and their labels, balanced over the ten classes (``novel``: Novel-Shapes',
    ``glyphs``: the orientation-sensitive Glyphs')."""
    g, labels, mask = _layout(num_samples, seed, novel, glyphs)
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


def write_folder(root: str | os.PathLike, train_per_class: int = 20, val_per_class: int = 50, novel: bool = True,
                 seed: int = 0, glyphs: bool = False) -> Path:
    """Write a generated dataset as an ImageFolder tree, ``root/train/<class>/NNNN.png`` and ``root/val/<class>/NNNN.png``.

    Novel-Shapes by default, with few training images per class: the small-data transfer task on which a pretrained
    backbone should beat training from scratch; ``glyphs``: the Glyphs classes instead, whose mirror images are one
    another. ``seed`` picks the draw (train and val never share one).
    """
    from PIL import Image

    root = Path(root)
    names = GLYPHS if glyphs else NOVEL_SHAPES if novel else CLASSES
    for split, per_class, split_seed in (("train", train_per_class, 1000 + 2 * seed), ("val", val_per_class, 1001 + 2 * seed)):
        images, labels = make_shapes(per_class * len(names), split_seed, novel, glyphs)
        for name in names:
            (root / split / name.replace(" ", "_")).mkdir(parents=True, exist_ok=True)
        for i, (image, label) in enumerate(zip(images, labels.tolist())):
            Image.fromarray(image.permute(1, 2, 0).numpy()).save(root / split / names[label].replace(" ", "_") / f"{i:05d}.png")
    return root
