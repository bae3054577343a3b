"""``cutmix-zoo list``: the registry's models as a table, as JSON, or as the README's markdown table."""

from __future__ import annotations

import argparse
import json

from .. import registry
from ..errors import InvalidArgumentError
from .common import Subparsers, print_table

NAME = "list"
HELP = "list the registry's models"


def add_parser(subparsers: Subparsers) -> argparse.ArgumentParser:
    """Add ``list`` to the ``cutmix-zoo`` parser."""
    p = subparsers.add_parser(NAME, help=HELP, description="List registry models matching an fnmatch pattern.")
    p.add_argument("pattern", nargs="?", default="*", help="fnmatch pattern, e.g. 'resnet50.*' or '*_c100' (default: all)")
    p.add_argument("--json", action="store_true", help="print the full entries as JSON")
    p.add_argument("--markdown", action="store_true", help="print the README's model table (every model)")
    return p


def run(args: argparse.Namespace) -> int:
    """Print the models matching ``args.pattern``; 0 when some do."""
    names = registry.list_models(args.pattern)
    if not names:
        raise InvalidArgumentError(f"No model matches the pattern {args.pattern!r}; `cutmix-zoo list` shows them all.")
    defaults = registry.default_names()
    if args.markdown:
        from ..hub.cards import model_table

        print(model_table(), end="")
        return 0
    if args.json:
        print(json.dumps([dict(registry.model_info(n), default=n in defaults) for n in names], indent=2))
        return 0
    rows = []
    for n in names:
        e = registry.get_entry(n)
        rows.append([n + (" *" if n in defaults else ""), e.dataset, e.method, registry.format_err(e.top1_err), registry.format_err(e.top5_err)])
    print_table(rows, ["name (* = default of its architecture)", "dataset", "method", "top-1 err %", "top-5 err %"])
    return 0
