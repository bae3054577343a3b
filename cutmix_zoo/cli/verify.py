"""``cutmix-zoo verify``: re-hash every cached weights file against the sha256 it was written with."""

from __future__ import annotations

import argparse
import json
import sys

from ..errors import EXIT_FAILURE
from .common import Subparsers, cached_files

NAME = "verify"
HELP = "re-hash the cached files"


def add_parser(subparsers: Subparsers) -> argparse.ArgumentParser:
    """Add ``verify`` to the ``cutmix-zoo`` parser."""
    p = subparsers.add_parser(NAME, help=HELP, description="Re-hash every cached weights file and check it against its recorded sha256.")
    p.add_argument("--json", action="store_true", help="print as JSON")
    return p


def run(args: argparse.Namespace) -> int:
    """Check every cached file; 1 when any fails, with one error line."""
    from safetensors import safe_open

    from ..files import sha256_file

    rows = cached_files()
    bad = 0
    for r in rows:
        r["sha256"] = sha256_file(r["file"])
        if r["expected_sha256"] is not None:
            ok, why = r["expected_sha256"] == r["sha256"], f"expected {r['expected_sha256']}"
        elif r["origin"] == "hub":
            ok, why = True, ""  # a Hub file stored as a plain blob: no sha256 to compare, readability is checked below
        else:
            ok, why = False, f"no conversion record ({r['record']} is missing or unreadable)"
        try:
            with safe_open(r["file"], framework="pt") as f:
                f.keys()
        except Exception:
            ok, why = False, why or "not a readable safetensors file"
        r["ok"] = ok
        bad += not ok
        if not args.json:
            print(f"{'ok ' if ok else 'BAD'} {r['name']}: sha256 {r['sha256']}" + ("" if ok else f" ({why})"))
    if args.json:
        print(json.dumps(rows, indent=2))
    elif not rows:
        print("Nothing is cached.")
    if bad:
        print(f"cutmix-zoo: error: {bad} cached file(s) failed verification; delete them or run `cutmix-zoo download --force NAME`.", file=sys.stderr)
    return EXIT_FAILURE if bad else 0
