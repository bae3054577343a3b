"""``cutmix-zoo shard``'s work: an ImageFolder tree (``train/`` and ``val/``) written as WebDataset tar shards.

Each split's images are shuffled once (a fixed seed, so a rerun writes the same shards) and written by webdataset's
``ShardWriter`` as ``DIR/train-000000.tar ...``: per sample a key, the file's bytes as they are (``jpg`` for a JPEG,
``png`` for a PNG, else the file's extension) and ``cls``, its class index. Shuffling here matters: a reader streams a
shard in its order, so shards written class by class would train on one class at a time. The index,
``DIR/dataset.json`` (classes, counts, and each shard's name, count, sha256 and classes), is written last and atomically: a
folder without one is unfinished, and rerunning the command rewrites it from the start.
"""

from __future__ import annotations

import glob
import json
import os
import random
from pathlib import Path
from typing import Any

from ..files import sha256_file, write_text_atomic
from ..reports.folders import class_folders, read_image_tree
from .dataspec import DataError
from .shards import INDEX_FORMAT, INDEX_NAME, webdataset

SPLITS = ("train", "val")
_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30}


def parse_size(text: str) -> int:
    """Bytes of a size such as ``512MB``, ``2GB`` or ``1000000``; a ValueError for anything else."""
    number = text.strip().upper().rstrip("S")
    unit = next(u for u in sorted(_UNITS, key=len, reverse=True) if number.endswith(u))
    value = float(number[: len(number) - len(unit)] if unit else number)
    if value <= 0:
        raise ValueError(text)
    return int(value * _UNITS[unit])


def image_field(path: str, data: bytes) -> str:
    """The sample field of an image file's bytes: ``jpg`` or ``png`` by their signature, else the file's extension."""
    if data[:2] == b"\xff\xd8":
        return "jpg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    return Path(path).suffix.lower().lstrip(".") or "img"


def write_split(samples: list[tuple[str, int]], output: Path, split: str, shard_size: int) -> list[dict[str, Any]]:
    """Write one split's ``(path, class)`` samples, shuffled with a fixed seed, as ``split-NNNNNN.tar`` shards of at most
    about ``shard_size`` bytes; returns each shard's name, sample count, sha256 and its samples' classes in order."""
    wds = webdataset()
    order = list(samples)
    random.Random(f"shards:{split}").shuffle(order)
    written: list[dict[str, Any]] = []
    labels: list[int] = []
    writer: Any = None

    def done(fname: str) -> None:
        written.append({"name": os.path.basename(fname), "count": writer.count, "sha256": sha256_file(fname),
                        "labels": labels[len(labels) - writer.count:]})

    writer = wds.ShardWriter(str(output / f"{split}-%06d.tar"), maxcount=10**9, maxsize=shard_size, post=done, verbose=0)
    with writer:
        for number, (path, label) in enumerate(order):
            try:
                with open(path, "rb") as f:
                    data = f.read()
            except OSError as e:
                raise DataError(f"The image {path} cannot be read ({e.strerror or e}): replace or remove it.") from None
            writer.write({"__key__": f"{split}{number:08d}", image_field(path, data): data, "cls": str(label).encode()})
            labels.append(label)
    return written


def write_shards(source: str | os.PathLike, output: str | os.PathLike, shard_size: int = 512 * 10**6) -> Path:
    """Write the ImageFolder tree ``source`` (``train/`` and ``val/``, the same class folders) as shards in ``output``
    and its index last; returns the index's path. Shards of an earlier unfinished run there are replaced."""
    source, output = Path(source), Path(output)
    folders = {split: source / split for split in SPLITS}
    if not all(folder.is_dir() for folder in folders.values()):
        raise DataError(f"{source} needs train/ and val/ subfolders, each with one folder of images per class, to be sharded.")
    classes = class_folders(folders["train"])
    if class_folders(folders["val"]) != classes:
        raise DataError(f"{source}: train/ and val/ need the same class folders to be sharded.")
    output.mkdir(parents=True, exist_ok=True)
    for stale in [output / INDEX_NAME, *map(Path, glob.glob(str(output / "*-[0-9][0-9][0-9][0-9][0-9][0-9].tar")))]:
        stale.unlink(missing_ok=True)
    splits = {}
    for split, folder in folders.items():
        tree = read_image_tree(folder, classes)
        shards = write_split(tree.samples, output, split, shard_size)
        splits[split] = {"count": sum(s["count"] for s in shards), "shards": shards}
    index = {"format": INDEX_FORMAT, "version": 1, "classes": classes, "splits": splits}
    return write_text_atomic(output / INDEX_NAME, json.dumps(index, indent=1) + "\n")
