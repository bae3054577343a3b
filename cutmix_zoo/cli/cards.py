"""``cutmix-zoo cards``: write (or check) model_cards/<name>.md for every registry entry."""

from __future__ import annotations

import argparse
from pathlib import Path

from .. import registry
from ..errors import ZooError
from .common import Subparsers

NAME = "cards"
HELP = "write the model cards from the registry"


def add_parser(subparsers: Subparsers) -> argparse.ArgumentParser:
    """Add ``cards`` to the ``cutmix-zoo`` parser."""
    p = subparsers.add_parser(NAME, help=HELP, description="Write model_cards/<name>.md for every registry entry.")
    p.add_argument("-o", "--output", default="model_cards", help="folder to write (default: model_cards)")
    p.add_argument("--check", action="store_true", help="only check that the cards in the folder match the registry")
    return p


def run(args: argparse.Namespace) -> int:
    """Write the cards, or with ``--check`` fail (1) when any card in the folder differs from the registry."""
    from ..hub.cards import render_card, write_cards

    if args.check:
        stale = [n for n in registry.list_models()
                 if not (Path(args.output) / f"{n}.md").is_file() or (Path(args.output) / f"{n}.md").read_text() != render_card(n)]
        if stale:
            raise ZooError(f"{len(stale)} model cards in {args.output} differ from the registry ({', '.join(stale[:3])}); run `cutmix-zoo cards`.")
        print(f"All {len(registry.list_models())} model cards in {args.output} match the registry.")
        return 0
    paths = write_cards(args.output)
    print(f"Wrote {len(paths)} model cards to {args.output}.")
    return 0
