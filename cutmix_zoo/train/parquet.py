"""A Hugging Face image dataset's Parquet files as streamed shards (:mod:`.streams`): each file one shard.

The Hub stores an image dataset as ``data/train-00000-of-00004.parquet ...`` (and ``validation``, ``val`` or ``test``),
with an image column (a struct of the file's ``bytes`` and ``path``) and a ``ClassLabel`` column, and the features in
the files' schema metadata. The ``datasets`` library reads those features (the class names, which column is which);
pyarrow reads the rows a batch at a time, so a file is streamed, never loaded or converted whole.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Generator
from typing import Any

from ..errors import InvalidArgumentError
from .dataspec import DataError
from .shards import Shard, Source

TRAIN_SPLITS = ("train",)
VAL_SPLITS = ("validation", "val", "test")
_ROWS_PER_READ = 64


def parquet_files(folder: str, split: str) -> list[str]:
    """The Parquet files of ``split`` in ``folder``: ``data/split-*.parquet``, ``split-*.parquet`` or ``split/*.parquet``."""
    for pattern in (f"data/{split}-*.parquet", f"{split}-*.parquet", f"{split}/*.parquet", f"data/{split}/*.parquet"):
        found = sorted(glob.glob(os.path.join(glob.escape(folder), pattern)))
        if found:
            return found
    return []


def _datasets() -> Any:
    try:
        import datasets
    except ImportError:
        raise InvalidArgumentError("Reading Parquet datasets needs the datasets library: pip install 'cutmix-zoo[scale]'.") from None
    return datasets


def columns(path: str) -> tuple[str, str, list[str]]:
    """The image column, the label column and the class names of a Parquet file, from its features (``datasets``)."""
    datasets = _datasets()
    import pyarrow.parquet as pq  # a dependency of datasets
    try:
        features = datasets.Features.from_arrow_schema(pq.read_schema(path))
    except (OSError, ValueError) as e:
        raise DataError(f"The Parquet file {path} cannot be read ({str(e).strip() or type(e).__name__}).") from None
    images = [name for name, f in features.items() if isinstance(f, datasets.Image)]
    labels = [name for name, f in features.items() if isinstance(f, datasets.ClassLabel)]
    if not images or not labels:
        raise DataError(f"The Parquet file {path} has no {'Image' if not images else 'ClassLabel'} column in its features; "
                        "a classifier trains on an image column and a class label column.")
    return images[0], labels[0], list(features[labels[0]].names)


def parquet_rows(path: str) -> Generator[tuple[str, bytes, int], None, None]:
    """The ``(key, image bytes, class)`` rows of one Parquet file in order (the key: the row's number), a DataError naming
    the file if it cannot be read."""
    import pyarrow.parquet as pq

    image, label, _ = columns(path)
    row = 0
    try:
        for batch in pq.ParquetFile(path).iter_batches(batch_size=_ROWS_PER_READ, columns=[image, label]):
            for cell, target in zip(batch.column(0).to_pylist(), batch.column(1).to_pylist()):
                if not cell or not cell.get("bytes"):
                    raise DataError(f"The row {row} of the Parquet file {path} holds no image bytes.")
                yield f"row{row}", cell["bytes"], int(target)
                row += 1
    except OSError as e:
        if isinstance(e, DataError):
            raise
        raise DataError(f"The Parquet file {path} cannot be read at row {row} ({str(e).strip() or type(e).__name__}).") from None


def parquet_source(folder: str, with_labels: bool = False) -> Source:
    """The :class:`~.shards.Source` of a folder of Parquet files: its train and validation files, each counted from its
    metadata, and the class names of the training files' features; ``with_labels`` (``--val-split``: no validation
    files needed) reads each training file's label column too."""
    train = parquet_files(folder, "train")
    val = next((found for split in VAL_SPLITS if (found := parquet_files(folder, split))), [])
    if not train or not (val or with_labels):
        raise DataError(f"{folder} holds no {'train' if not train else 'validation, val or test'} Parquet files "
                        "(data/train-*.parquet and data/validation-*.parquet, as the Hub stores them).")
    _, label, classes = columns(train[0])
    import pyarrow.parquet as pq  # there: columns() has checked that datasets (and so pyarrow) is installed

    def shard(path: str, labels: bool) -> Shard:
        if labels:
            column = tuple(int(k) for k in pq.read_table(path, columns=[label]).column(0).to_pylist())
            return Shard(path, len(column), labels=column)
        return Shard(path, pq.ParquetFile(path).metadata.num_rows)

    try:
        shards = [[shard(path, with_labels) for path in train], [shard(path, False) for path in val]]
    except OSError as e:
        raise DataError(f"A Parquet file of {folder} cannot be read ({str(e).strip() or type(e).__name__}).") from None
    return Source(shards[0], shards[1], classes, parquet_rows)
