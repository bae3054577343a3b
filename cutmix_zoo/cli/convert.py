"""``cutmix-zoo convert``: an original-release checkpoint as a checked safetensors file."""

from __future__ import annotations

import argparse
from pathlib import Path

from .. import registry
from ..errors import InvalidArgumentError
from .common import Subparsers

NAME = "convert"
HELP = "convert an original checkpoint to safetensors"


def add_parser(subparsers: Subparsers) -> argparse.ArgumentParser:
    """Add ``convert`` to the ``cutmix-zoo`` parser."""
    p = subparsers.add_parser(NAME, help=HELP,
                              description="Convert an original-release checkpoint (train.py dict, module. dict or bare state dict) "
                                          "to a checked safetensors file.")
    p.add_argument("input", help="the original .pth or .pth.tar file")
    p.add_argument("--model", required=True, help="registry name whose architecture the file holds")
    p.add_argument("-o", "--output", help="output .safetensors path (default: beside the input)")
    p.add_argument("--source-url", help="URL to record in the file's metadata")
    p.add_argument("--force", action="store_true", help="overwrite an existing output file")
    return p


def run(args: argparse.Namespace) -> int:
    """Convert ``args.input`` for ``args.model`` and write it, refusing to overwrite without ``--force``."""
    from ..files import sha256_file
    from ..hub.convert import load_original, write_converted
    from ..model_config import ModelConfig

    entry = registry.get_entry(args.model)
    source = Path(args.input)
    if not source.is_file():
        raise InvalidArgumentError(f"The checkpoint {source} does not exist.")
    out = Path(args.output) if args.output else source.with_name(source.name.split(".")[0] + ".safetensors")
    if out.exists() and not args.force:
        raise InvalidArgumentError(f"{out} already exists; pass --force to overwrite it, or -o to write elsewhere.")
    state, meta = load_original(source)
    write_converted(ModelConfig.from_entry(entry), state, out, source_url=args.source_url, source_sha256=sha256_file(source), label=str(source))
    print(f"{source} ({meta['layout']} layout, {len(state)} tensors) -> {out} as {entry.name}")
    return 0
