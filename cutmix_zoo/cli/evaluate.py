"""``cutmix-zoo eval``: a zoo model's loss and top-1/top-5 error on a data folder (:mod:`cutmix_zoo.train.evaluation`)."""

from __future__ import annotations

import argparse

from .common import Subparsers

NAME = "eval"
HELP = "evaluate a zoo model on an ImageFolder or CIFAR folder"


def add_parser(subparsers: Subparsers) -> argparse.ArgumentParser:
    """Add ``eval`` with the evaluator's own arguments, help included (:func:`cutmix_zoo.train.evaluation.eval_parser`)."""
    from ..train.evaluation import eval_parser

    evaluator = eval_parser()
    return subparsers.add_parser(NAME, help=HELP, description=evaluator.description, parents=[evaluator], add_help=False)


def run(args: argparse.Namespace) -> int:
    """Load the model, evaluate it and print its errors; 0 when done."""
    from ..train.evaluation import run_eval

    return run_eval(args)
