"""The trainer that regenerates the zoo's weights: ``python -m cutmix_zoo.train`` / ``cutmix-zoo train``,
and ``cutmix-zoo eval``.

Importing this package is cheap; the training machinery loads when a command runs.
"""

from __future__ import annotations


def train_main(argv: list[str] | None = None) -> int:
    """``cutmix-zoo train``: parse ``argv`` and train; 0 when done, 143 when interrupted with a checkpoint saved."""
    from .config import train_parser
    from .loop import run

    return run(train_parser().parse_args(argv))


def eval_main(argv: list[str] | None = None) -> int:
    """``cutmix-zoo eval``: parse ``argv``, evaluate a zoo model on a data folder and print its errors."""
    from .evaluation import eval_parser, run_eval

    return run_eval(eval_parser().parse_args(argv))


__all__ = ["train_main", "eval_main"]
