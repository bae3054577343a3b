"""The detection trainer's data: each rank's batches of an epoch (the classifier's :class:`~.data.EpochSampler` order,
grouped by aspect ratio as torchvision's ``GroupedBatchSampler`` groups them, resumable at any batch), its loader, and
the evaluation of the val split shared out over the ranks.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator, Sequence

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Sampler

from ..detection.data import DetectionSplit
from ..detection.dataset import DetectionDataset, collate
from ..detection.evaluate import DetectionMetrics, evaluate_detections, predict_split
from .data import EpochSampler
from .ranks import Ranks, autocast


def aspect_groups(split: DetectionSplit, factor: int) -> list[int]:
    """Each image's aspect-ratio group: torchvision's ``create_aspect_ratio_groups`` (width / height binned at
    ``2 ** linspace(-1, 1, 2 * factor + 1)``; ``factor`` 0 is one bin at 1: landscape vs portrait, Detectron2's grouping);
    a negative ``factor`` puts every image in one group (no grouping)."""
    if factor < 0:
        return [0] * len(split.records)
    bins = sorted(2 ** (-1 + 2 * i / (2 * factor)) for i in range(2 * factor + 1)) if factor > 0 else [1.0]
    return [bisect.bisect_right(bins, r.width / r.height) for r in split.records]


def group_batches(keys: Sequence[tuple[int, int]], groups: Sequence[int], batch_size: int) -> list[list[tuple[int, int]]]:
    """``keys`` (in sampling order) as batches of one aspect-ratio group each, a batch made when its group has
    ``batch_size`` keys waiting (torchvision's ``GroupedBatchSampler``); the keys left over in the groups then make mixed
    batches in their sampling order, and a last partial batch is dropped, so every rank makes ``len(keys) // batch_size``."""
    waiting: dict[int, list[int]] = {}  # positions in ``keys`` (a padded DistributedSampler may repeat a key)
    batches = []
    for position, key in enumerate(keys):
        group = waiting.setdefault(groups[key[1]], [])
        group.append(position)
        if len(group) == batch_size:
            batches.append([keys[p] for p in group])
            group.clear()
    rest = [keys[p] for p in sorted(p for group in waiting.values() for p in group)]
    batches += [rest[i:i + batch_size] for i in range(0, len(rest) - batch_size + 1, batch_size)]
    return batches


class EpochBatches(Sampler):
    """This rank's batches of an epoch, from :meth:`set_position`'s batch on (a resumed epoch starts past 0); the keys are
    the ``(epoch, index)`` pairs of :class:`~.data.EpochSampler` (a DistributedSampler), which the dataset draws from."""

    def __init__(self, sampler: EpochSampler, batch_size: int, groups: Sequence[int]) -> None:
        self.sampler, self.batch_size, self.groups = sampler, batch_size, list(groups)
        self.epoch, self.start = 0, 0

    @property
    def steps(self) -> int:
        """Batches in a whole epoch on this rank (the same on every rank: the sampler pads the ranks to equal shares)."""
        return self.sampler.num_samples // self.batch_size

    def set_position(self, epoch: int, start: int = 0) -> None:
        """Yield ``epoch``'s batches from its ``start``-th on."""
        self.epoch, self.start = epoch, start

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        self.sampler.set_position(self.epoch, 0)
        return iter(group_batches(list(self.sampler), self.groups, self.batch_size)[self.start:])

    def __len__(self) -> int:
        return self.steps - self.start


def train_loader(dataset: DetectionDataset, batches: EpochBatches, workers: int, pin: bool) -> DataLoader:
    """The training loader: ``batches``' keys through ``dataset``, with its own generator (the global RNG, which the model's
    sampling draws from and a resume restores, is never touched) and workers that live for the whole run."""
    extra = {"persistent_workers": True, "prefetch_factor": 2} if workers > 0 else {}
    return DataLoader(dataset, batch_sampler=batches, num_workers=workers, collate_fn=collate, pin_memory=pin,
                      generator=torch.Generator().manual_seed(0), **extra)  # type: ignore[arg-type]  # keys are (epoch, index)


def evaluate_shared(module: nn.Module, split: DetectionSplit, batch_size: int, workers: int, ranks: Ranks,
                    bf16: bool) -> DetectionMetrics:
    """mAP of ``module`` on ``split``: each rank predicts its share of the images (in bf16 autocast when ``bf16``), rank 0
    scores them all with COCOeval, and every rank returns rank 0's metrics."""
    with autocast(ranks.device, bf16):
        mine = predict_split(module, split, batch_size, ranks.device, workers, ranks.rank, ranks.world_size)
    if ranks.world_size == 1:
        return evaluate_detections(split, mine)
    shares: list[dict[int, dict[str, torch.Tensor]] | None] = [None] * ranks.world_size
    dist.all_gather_object(shares, mine)
    scored: list[DetectionMetrics | None] = [None]
    if ranks.is_main:
        scored = [evaluate_detections(split, {k: v for share in shares if share for k, v in share.items()})]
    dist.broadcast_object_list(scored, src=0)
    assert scored[0] is not None  # rank 0 broadcast its metrics
    return scored[0]
