"""``cutmix-zoo download``: fill the cache ahead of time (Hub files, or original-release files converted)."""

from __future__ import annotations

import argparse
import json

from .. import registry
from ..errors import InvalidArgumentError
from .common import Subparsers

NAME = "download"
HELP = "fill the cache ahead of time"


def add_parser(subparsers: Subparsers) -> argparse.ArgumentParser:
    """Add ``download`` to the ``cutmix-zoo`` parser."""
    p = subparsers.add_parser(NAME, help=HELP, description="Download (and convert, for original-release files) models into the cache.")
    p.add_argument("names", nargs="*", metavar="NAME", help="registry names or architectures")
    p.add_argument("--all", action="store_true", help="every model in the registry")
    p.add_argument("--revision", help="Hub revision (branch, tag or commit)")
    p.add_argument("--force", action="store_true", help="download again even if cached")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--json", action="store_true", help="print the cached files as JSON")
    return p


def _entries(names: list[str], all_: bool) -> list[registry.Entry]:
    if all_:
        return [registry.get_entry(n) for n in registry.list_models()]
    if not names:
        raise InvalidArgumentError("Name at least one model, or pass --all.")
    return [registry.get_entry(n) for n in names]


def run(args: argparse.Namespace) -> int:
    """Fetch (and check) every named model's weights into the cache and print where each is."""
    from ..hub.fetch import fetch_weights

    results = []
    for entry in _entries(args.names, args.all):
        path = fetch_weights(entry, revision=args.revision, progress=not args.quiet, force=args.force, verify=True)
        results.append({"name": entry.name, "file": str(path)})
        if not args.json:
            print(f"{entry.name}: {path}")
    if args.json:
        print(json.dumps(results, indent=2))
    return 0
