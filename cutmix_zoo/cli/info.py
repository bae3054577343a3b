"""``cutmix-zoo info``: everything known about one model, its registry entry, size and cache state."""

from __future__ import annotations

import argparse
import json
from typing import Any

from .. import registry
from .common import Subparsers

NAME = "info"
HELP = "show everything known about one model"


def add_parser(subparsers: Subparsers) -> argparse.ArgumentParser:
    """Add ``info`` to the ``cutmix-zoo`` parser."""
    p = subparsers.add_parser(NAME, help=HELP, description="Show a model's registry entry, size and cache state.")
    p.add_argument("name", help="registry name (arch.tag) or bare architecture")
    p.add_argument("--json", action="store_true", help="print as JSON")
    return p


def info_dict(name: str) -> dict[str, Any]:
    """model_info plus what is only known at run time: parameter count and cached files."""
    from ..hub.cache import cache_status

    info = registry.model_info(name)
    if info["num_params"] is None:  # an entry added at run time: count on the meta device
        from ..api import count_parameters

        info["num_params"] = count_parameters(name)
    info.update(cache_status(registry.get_entry(name)))
    return info


def run(args: argparse.Namespace) -> int:
    """Print what is known about ``args.name``, as text or JSON."""
    info = info_dict(args.name)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    for key, value in info.items():
        if key == "citation":
            continue
        print(f"{key + ':':<16} {value}")
    return 0
