"""``cutmix-zoo train``: the bundled trainer (:mod:`cutmix_zoo.train`), its command line as ``python -m cutmix_zoo.train``'s."""

from __future__ import annotations

import argparse

from .common import Subparsers

NAME = "train"
HELP = "train a model with an original recipe (see `cutmix-zoo train --help`)"


def add_parser(subparsers: Subparsers) -> argparse.ArgumentParser:
    """Add ``train`` with the trainer's own arguments, help included (:func:`cutmix_zoo.train.config.train_parser`)."""
    from ..train.config import train_parser

    trainer = train_parser()
    return subparsers.add_parser(NAME, help=HELP, description=trainer.description, parents=[trainer], add_help=False)


def run(args: argparse.Namespace) -> int:
    """Train as ``python -m cutmix_zoo.train`` would with the same arguments.

    The trainer parses them again: the run settings it stores in every checkpoint (and compares on ``--resume``) are
    then its own flags only, not the dispatcher's.
    """
    from ..train import train_main

    return train_main(args.argv)
