"""``cutmix-zoo shard``: an ImageFolder tree written as WebDataset tar shards with an index, for ``train --data DIR``
on many workers or nodes, or to copy into object storage and stream from there."""

from __future__ import annotations

import argparse

from .common import Subparsers

NAME = "shard"
HELP = "write an ImageFolder tree (train/ and val/) as WebDataset tar shards with an index, for train --data"


def _size(text: str) -> int:
    """An argument type: a size in bytes such as 512MB or 2GB."""
    from ..train.shard_writer import parse_size

    try:
        return parse_size(text)
    except (ValueError, StopIteration):
        raise argparse.ArgumentTypeError(f"{text!r} is not a size such as 512MB or 2GB") from None


def add_parser(subparsers: Subparsers) -> argparse.ArgumentParser:
    """Add ``shard`` to the ``cutmix-zoo`` parser."""
    p = subparsers.add_parser(NAME, help=HELP,
                              description="Write SRC/train and SRC/val (one folder of images per class) as DIR/train-000000.tar ... "
                                          "and DIR/val-000000.tar ... (each image's bytes as they are, with its class index), "
                                          "shuffled once, and DIR/dataset.json (classes, counts, shard sha256s) last.")
    p.add_argument("source", metavar="SRC", help="ImageFolder tree with train/ and val/")
    p.add_argument("--output", required=True, metavar="DIR", help="folder for the shards and dataset.json (created if needed)")
    p.add_argument("--shard-size", type=_size, default="512MB", metavar="SIZE", help="about this many bytes per shard (default 512MB)")
    return p


def run(args: argparse.Namespace) -> int:
    """Write the shards and their index, and say what was written."""
    import json

    from ..train.shard_writer import write_shards

    index_path = write_shards(args.source, args.output, args.shard_size)
    index = json.loads(index_path.read_text())
    counts = ", ".join(f"{split} {s['count']} images in {len(s['shards'])} shards" for split, s in index["splits"].items())
    print(f"wrote {args.output}: {counts}, {len(index['classes'])} classes (index {index_path})")
    return 0
