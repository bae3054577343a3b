"""``cutmix-zoo export``: a model's Hub folder (model.safetensors, config.json, README.md)."""

from __future__ import annotations

import argparse

from .common import Subparsers, export_folder

NAME = "export"
HELP = "write a model's Hub folder"


def add_parser(subparsers: Subparsers) -> argparse.ArgumentParser:
    """Add ``export`` to the ``cutmix-zoo`` parser."""
    p = subparsers.add_parser(NAME, help=HELP, description="Write model.safetensors, config.json and README.md of a model into a folder.")
    p.add_argument("name", help="registry name, bare architecture, or exported folder")
    p.add_argument("-o", "--output", required=True, help="folder to write")
    p.add_argument("--revision", help="Hub revision to export")
    p.add_argument("--repo-id", help="the Hub repo it will be published to, which the card's snippets then load")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--force", action="store_true", help="overwrite another model's export in --output")
    return p


def run(args: argparse.Namespace) -> int:
    """Export ``args.name`` into ``args.output``, as its one writer (a second export into it is refused), refusing to
    overwrite another model's export without ``--force``."""
    from ..builder import resolve_config
    from ..files import output_lock
    from ..hub.cache import output_locks
    from ..hub.repo import is_repo_id

    if not is_repo_id(args.name):
        resolve_config(args.name)  # an unknown name is refused before the folder is made
    with output_lock(args.output, "cutmix-zoo export", output_locks()):
        out = export_folder(args.name, args.output, args.revision, not args.quiet, args.repo_id, force=args.force)
    print(f"Exported {args.name} to {out}: model.safetensors, config.json, README.md")
    return 0
