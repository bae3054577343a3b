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
    return p


def run(args: argparse.Namespace) -> int:
    """Export ``args.name`` into ``args.output``."""
    out = export_folder(args.name, args.output, args.revision, not args.quiet, args.repo_id)
    print(f"Exported {args.name} to {out}: model.safetensors, config.json, README.md")
    return 0
