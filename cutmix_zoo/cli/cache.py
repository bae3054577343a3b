"""``cutmix-zoo cache``: where the caches are and which models they hold."""

from __future__ import annotations

import argparse
import json

from .common import Subparsers, cached_files

NAME = "cache"
HELP = "show where the cache is and what it holds"


def add_parser(subparsers: Subparsers) -> argparse.ArgumentParser:
    """Add ``cache`` to the ``cutmix-zoo`` parser."""
    p = subparsers.add_parser(NAME, help=HELP, description="Show the cache folders, cached models and their sizes.")
    p.add_argument("--json", action="store_true", help="print as JSON")
    return p


def run(args: argparse.Namespace) -> int:
    """Print the cache folders and every cached model with its size and origin."""
    from ..hub.cache import cache_dir, hub_cache_dir

    rows = cached_files()
    summary = {"zoo_cache": str(cache_dir()), "hub_cache": hub_cache_dir() or "huggingface_hub default",
               "models": [{k: r[k] for k in ("name", "file", "bytes", "origin")} for r in rows],
               "total_bytes": sum(r["bytes"] for r in rows)}
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    print(f"zoo cache: {summary['zoo_cache']}\nhub cache: {summary['hub_cache']}")
    for r in rows:
        print(f"  {r['name']:<40} {r['bytes'] / 2**20:8.1f} MiB  {r['origin']:<16} {r['file']}")
    print(f"{len(rows)} models, {summary['total_bytes'] / 2**20:.1f} MiB")
    if any(r["origin"] == "original release" for r in rows):
        print("A Hub copy, once cached, is used before an original-release one: `cutmix-zoo download --force NAME` fetches it.")
    return 0
