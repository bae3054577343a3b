"""Training and validation data streamed from shards (WebDataset tars, :mod:`.shards`, or Parquet files, :mod:`.parquet`).

A shard is read in its own order, never by random access, so the epoch's order is built from shards: the training
shards in an order drawn from (seed, epoch), their samples one after another; that sequence is the epoch. Each rank
takes a contiguous block of it (``ceil(N / ranks)`` samples, the last block wrapping round to the start as torch's
DistributedSampler pads), so every sample is trained on once per epoch over the ranks however unevenly the shards hold
them, and a rank reads only the shards its block touches. Within a rank, each loader worker (a "lane") takes a
contiguous run of the rank's batches and passes it through a shuffle buffer seeded from (seed, epoch, rank, lane); the
DataLoader takes batches from the workers in turn, so step ``s`` is lane ``s % workers``'s next batch.

All of it is a function of (seed, epoch, ranks, workers), so a run resumed mid-epoch skips the samples its steps
already took and continues at the next one, bit-identical to a run that was never stopped (with the same ranks and
workers). A sample's augmentation is seeded from (seed, epoch, its index in the shards' natural order), as a folder's
is from its file's index. Validation streams each rank's contiguous share of the validation shards once, unshuffled.

Per sample the two decode paths of the folders run: PIL and the run's transforms in the workers (``--decode cpu``), or
the bytes and the augmentation's parameters, decoded and augmented on the device (``--decode gpu``, :mod:`.gpu_decode`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import math
import os
import random
from collections.abc import Callable, Iterator
from typing import Any, NoReturn

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info
from torchvision import transforms as T

from ..errors import InvalidArgumentError
from .dataspec import DataError, DataSpec, sample_seed, seeded
from .gpu_decode import AugmentDraw, DeviceAugment, EncodedSample, collate_encoded, encoded_sample
from .shards import INDEX_NAME, Shard, ShardReader, Source, index_shards, is_pattern, pattern_shards, read_index, tar_samples

SHUFFLE_BUFFER = 512  # samples each lane shuffles among (a shard's order is mixed already: cutmix-zoo shard shuffles it)
# One sample as the loader yields it: (shard, key, bytes, class, epoch, index) -> what the collate function batches.
SampleMaker = Callable[[str, str, bytes, int, int, int], Any]


def is_stream(data: str) -> bool:
    """Whether ``--data`` is streamed: tar shards (a pattern, a URL, ``pipe:``, a folder with an index) or Parquet files."""
    from .parquet import parquet_files

    if is_pattern(data):
        return True
    return os.path.isdir(data) and (os.path.isfile(os.path.join(data, INDEX_NAME)) or bool(parquet_files(data, "train")))


def open_source(data: str, val_data: str | None, split_off: bool = False) -> Source:
    """The shards of ``--data`` (and ``--val-data`` for a pattern): a shard folder's index, checked against its sha256s;
    a pattern's shards with their counts; or a folder of Parquet files. ``split_off``: validation is held out of the
    training shards (``--val-split``), so none need be given, and each sample's class is read."""
    if not is_pattern(data):
        if val_data is not None:
            raise InvalidArgumentError(f"--val-data goes with --data a pattern of tar shards; {data} holds its own validation split.")
        if os.path.isfile(os.path.join(data, INDEX_NAME)):
            index = read_index(data)
            return Source(index_shards(data, index, "train"), index_shards(data, index, "val"), list(index["classes"]), tar_samples)
        from .parquet import parquet_source

        return parquet_source(data, with_labels=split_off)
    if val_data is None and not split_off:
        raise InvalidArgumentError(f"--data {data} names training shards only: give the validation shards with --val-data "
                                   "(or hold some out with --val-split).")
    train, classes = pattern_shards(data)
    val = pattern_shards(val_data)[0] if val_data is not None else []
    if classes is None:  # no index beside them: the classes are the class indices seen
        seen = max((max(s.labels, default=-1) for s in (*train, *val) if s.labels), default=-1)
        classes = [str(k) for k in range(seen + 1)]
    return Source(train, val, classes, tar_samples)


def held_out(source: Source, fraction: float, seed: int, data: str) -> Source:
    """``source`` with its validation split held out of its training shards: ``fraction`` of each class drawn with
    ``seed``, as ``--val-split`` holds out of a folder (:func:`cutmix_zoo.reports.transfer.split_per_class`); each
    shard is read by both splits, each taking its own samples."""
    from ..reports.transfer import split_per_class

    if any(s.labels is None for s in source.train):
        raise DataError(f"--val-split needs each sample's class, which the index of {data} does not list: rewrite it with "
                        "cutmix-zoo shard.")
    targets = torch.tensor([label for s in source.train for label in s.labels or ()])
    counts = torch.bincount(targets, minlength=len(source.classes)).tolist()
    for label, count in enumerate(counts):
        if count < 2:
            raise DataError(f"The class {source.classes[label]!r} of {data} has {count} sample(s); --val-split needs at least "
                            "two per class (one to train on, one to validate).")
    off = set(split_per_class(targets, fraction, seed)[1].tolist())
    train, val, start = [], [], 0
    for shard in source.train:
        kept = frozenset(m for m in range(shard.count) if start + m not in off)
        split = frozenset(range(shard.count)) - kept
        train.append(dataclasses.replace(shard, count=len(kept), members=kept))
        val.append(dataclasses.replace(shard, count=len(split), members=split))
        start += shard.count
    return Source([s for s in train if s.count], [s for s in val if s.count], source.classes, source.read)


def decoded_image(shard: str, key: str, data: bytes) -> Any:
    """A sample's image decoded in full by PIL (RGB), or a DataError naming its key and shard."""
    from PIL import Image, UnidentifiedImageError

    try:
        return Image.open(io.BytesIO(data)).convert("RGB")
    except UnidentifiedImageError:
        reason = "not an image format PIL can read"
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        reason = (str(e).strip() or type(e).__name__).splitlines()[0].rstrip(".")
    raise DataError(f"The image {key} of the shard {shard} cannot be read ({reason}): rewrite the shard without it.")


def undecodable(name: str) -> NoReturn:
    """What the device pipeline calls for an image torchvision cannot decode (``name``: its key and shard)."""
    raise DataError(f"The image {name} cannot be decoded: rewrite the shard without it.")


class PilSamples:
    """``--decode cpu``: PIL decodes a sample and the run's transform makes it a tensor; training samples (``train``)
    are transformed under torch's CPU generator seeded from (seed, epoch, index), as a folder's are (:class:`~.data.Augmented`)."""

    def __init__(self, transform: Callable, seed: int, train: bool) -> None:
        self.transform, self.seed, self.train = transform, seed, train

    def __call__(self, shard: str, key: str, data: bytes, label: int, epoch: int, index: int) -> tuple[torch.Tensor, int]:
        image = decoded_image(shard, key, data)
        if not self.train:
            return self.transform(image), label
        with seeded(sample_seed(self.seed, epoch, index)):
            return self.transform(image), label


class EncodedSamples:
    """``--decode gpu``: a sample's bytes as they are and, when training, its augmentation's parameters, drawn as a
    folder's are (:func:`~.gpu_decode.encoded_sample`) from the image header, seeded from (seed, epoch, index)."""

    def __init__(self, seed: int, train: T.Compose | None = None) -> None:
        self.seed = seed
        self.draw = AugmentDraw(train) if train is not None else None

    def __call__(self, shard: str, key: str, data: bytes, label: int, epoch: int, index: int) -> EncodedSample:
        name = f"{key} of the shard {shard}"
        return encoded_sample(data, name, label, self.draw, sample_seed(self.seed, epoch, index),
                              lambda _: decoded_image(shard, key, data))


class ShardStream(IterableDataset):
    """The samples of a list of shards, split over ranks and loader workers as the module says; ``train`` shuffles (by
    shard order and buffer) and takes whole batches, validation streams every sample once.

    :meth:`split` fixes the ranks, batch and workers; :meth:`set_position` (as :class:`~.data.EpochSampler`'s) the epoch
    and how many of this rank's samples were already trained. Loaders over it must not keep their workers between
    epochs: each epoch's workers take the position set before it.
    """

    def __init__(self, shards: list[Shard], read: ShardReader, sample: SampleMaker, seed: int, train: bool) -> None:
        self.shards, self.read, self.sample, self.seed, self.train = shards, read, sample, seed, train
        self.offsets = [0, *np.cumsum([s.count for s in shards]).tolist()]
        self.total = self.offsets[-1]
        self.world, self.rank, self.batch, self.lanes = 1, 0, 1, 1
        self.epoch, self.start = 0, 0

    def split(self, world: int, rank: int, batch: int, workers: int) -> None:
        """Read as rank ``rank`` of ``world``, in batches of ``batch`` from ``workers`` loader workers (0: the main process)."""
        self.world, self.rank, self.batch, self.lanes = world, rank, batch, max(workers, 1)

    def set_position(self, epoch: int, start: int = 0) -> None:
        """Stream ``epoch`` from this rank's ``start``-th sample on (a multiple of the batch; > 0 for a resumed epoch)."""
        self.epoch, self.start = epoch, start

    def block(self) -> tuple[int, int]:
        """This rank's positions in the epoch's sequence: ``[first, end)`` (training: whole batches; may pass the end and wrap)."""
        if not self.train:
            return self.total * self.rank // self.world, self.total * (self.rank + 1) // self.world
        per_rank = math.ceil(self.total / self.world)
        return self.rank * per_rank, self.rank * per_rank + per_rank // self.batch * self.batch

    def __len__(self) -> int:
        first, end = self.block()
        return end - first - self.start

    def lane(self, lane: int) -> tuple[int, int, int]:
        """Lane ``lane``'s positions ``[first, end)`` and how many of its samples earlier steps of this epoch took."""
        first, end = self.block()
        if not self.train:
            size = end - first
            return first + size * lane // self.lanes, first + size * (lane + 1) // self.lanes, 0
        batches, done_steps = (end - first) // self.batch, self.start // self.batch
        per_lane, extra = divmod(batches, self.lanes)
        lo = lane * per_lane + min(lane, extra)
        hi = lo + per_lane + (1 if lane < extra else 0)
        done = done_steps // self.lanes + (1 if lane < done_steps % self.lanes else 0)
        return first + lo * self.batch, first + hi * self.batch, done * self.batch

    def order(self) -> list[int]:
        """The shards in this epoch's order: drawn from (seed, epoch) when training, as listed for validation."""
        order = list(range(len(self.shards)))
        if self.train:
            random.Random(f"{self.seed}:{self.epoch}").shuffle(order)
        return order

    def positions(self, first: int, end: int) -> Iterator[tuple[str, str, bytes, int, int]]:
        """The samples at positions ``[first, end)`` of the epoch's sequence (wrapping past its end), each with its shard
        and its index in the shards' natural order; only the shards the range touches are read."""
        order, start = self.order(), 0
        spans = []
        for s in order:
            spans.append((s, start))
            start += self.shards[s].count
        for lo, hi in ((first, min(end, self.total)), (0, max(end - self.total, 0))):
            for s, at in spans:
                skip, take = max(lo - at, 0), min(hi, at + self.shards[s].count) - max(lo, at)
                if take <= 0:
                    continue
                yield from self.share(s, skip, take)

    def share(self, s: int, skip: int, take: int) -> Iterator[tuple[str, str, bytes, int, int]]:
        """Shard ``s``'s samples (its ``members`` only, where it lists them) after the first ``skip``, ``take`` of them."""
        shard, kept = self.shards[s], 0
        with contextlib.closing(self.read(shard.url)) as samples:
            for member, (key, data, label) in enumerate(samples):
                if shard.members is not None and member not in shard.members:
                    continue
                kept += 1
                if kept > skip:
                    yield shard.url, key, data, label, self.offsets[s] + kept - 1
                if kept == skip + take:
                    break
        if kept < skip + take:  # a tar cut at a block boundary reads as a shorter one: only the count tells
            raise DataError(f"The shard {shard.url} is cut short (truncated): it ended after {kept} of its {shard.count} samples.")

    def shuffled(self, samples: Iterator[Any], lane: int) -> Iterator[Any]:
        """``samples`` through a buffer of :data:`SHUFFLE_BUFFER`, its draws seeded from (seed, epoch, rank, lane)."""
        rng, buffer = random.Random(f"{self.seed}:{self.epoch}:{self.rank}:{lane}"), []
        for sample in samples:
            buffer.append(sample)
            if len(buffer) >= SHUFFLE_BUFFER:
                pick = rng.randrange(len(buffer))
                buffer[pick], buffer[-1] = buffer[-1], buffer[pick]
                yield buffer.pop()
        rng.shuffle(buffer)
        yield from buffer

    def __iter__(self) -> Iterator[Any]:
        info = get_worker_info()
        worker = info.id if info is not None else 0
        rotation = (self.start // self.batch) % self.lanes if self.train else 0  # the loader asks worker 0 first
        lane = (worker + rotation) % self.lanes
        first, end, done = self.lane(lane)
        samples = self.positions(first, end)
        if self.train:
            samples = self.shuffled(samples, lane)
        for taken, (url, key, data, label, index) in enumerate(samples):
            if taken >= done:
                yield self.sample(url, key, data, label, self.epoch, index)


def stream_data(data: str, val_data: str | None, val_split: float | None, decode: str, seed: int, train_tf: Callable,
                val_tf: Callable, registry_dataset: str) -> DataSpec:
    """The DataSpec of streamed ``--data``: training and validation :class:`ShardStream` s decoded by PIL with the run's
    transforms or, with ``decode="gpu"``, on the device; ``val_split``
    holds the validation samples out of the training shards (:func:`held_out`)."""
    source = open_source(data, val_data, split_off=val_split is not None)
    if val_split is not None:
        source = held_out(source, val_split, seed, data)
    if len(source.classes) < 2:
        raise DataError(f"{data} holds {len(source.classes)} class(es); a classifier needs at least two.")
    if not source.train or not source.val:
        raise DataError(f"{data} holds no {'training' if not source.train else 'validation'} shards.")
    classes = source.classes
    if decode == "gpu":
        augment = DeviceAugment(train_tf, val_tf, undecodable)
        train = ShardStream(source.train, source.read, EncodedSamples(seed, train_tf), seed, train=True)
        val = ShardStream(source.val, source.read, EncodedSamples(seed), seed, train=False)
        return DataSpec(train, val, len(classes), registry_dataset, classes=classes, collate=collate_encoded,
                        train_to_device=augment.train, val_to_device=augment.val)
    train = ShardStream(source.train, source.read, PilSamples(train_tf, seed, train=True), seed, train=True)
    val = ShardStream(source.val, source.read, PilSamples(val_tf, seed, train=False), seed, train=False)
    return DataSpec(train, val, len(classes), registry_dataset, classes=classes)
