"""What the commands share, below every command module: tables on stdout, one error line with its exit code instead
of a traceback, the usage error a command finds after parsing, an argument type, and the cache and export helpers
that two commands each use.

Nothing here imports torch: every command module imports this one, and ``cutmix-zoo list`` must start fast.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import Any

from .. import registry
from ..errors import InvalidArgumentError, ZooError, exit_code
from ..files import unwritable

Subparsers = argparse._SubParsersAction  # what add_subparsers returns; every command's add_parser adds its sub-parser to it


class UsageError(Exception):
    """A command line that parsed but cannot work (``--weights2`` without ``--compare``): the dispatcher reports it as
    argparse reports its own errors, the command's usage and ``cutmix-zoo COMMAND: error: ...``, exit status 2."""


def print_table(rows: list[list[str]], header: list[str]) -> None:
    """Rows under a header, each column as wide as its widest cell."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip())


def run_command(command: Callable[..., int], *args: Any) -> int:
    """Run a command, turning a ZooError (or Ctrl-C) into one ``cutmix-zoo:`` line and its exit code (:func:`errors.exit_code`)."""
    try:
        return command(*args)
    except ZooError as e:
        print(f"cutmix-zoo: error: {e}", file=sys.stderr)
        return exit_code(e)
    except KeyboardInterrupt as e:
        print("cutmix-zoo: interrupted", file=sys.stderr)
        return exit_code(e)


def positive(text: str) -> int:
    """An argument type: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not positive")
    return value


def cached_files() -> list[dict[str, Any]]:
    """Every cached weights file with its size, origin and the sha256 it was written with (files are not read)."""
    from ..hub.cache import SOURCE_NAME, cache_dir, cached_file, recorded_sha256

    rows = []
    for name in registry.list_models():
        entry = registry.get_entry(name)
        path = cached_file(entry)
        if path is None:
            continue
        original = path.parent == cache_dir() / name
        rows.append({"name": name, "file": str(path), "bytes": path.stat().st_size, "expected_sha256": recorded_sha256(entry, path),
                     "origin": "original release" if original else "hub",
                     "record": str(cache_dir() / name / SOURCE_NAME) if original else None})
    return rows


def export_folder(name: str, out: str, revision: str | None = None, progress: bool = True, repo_id: str | None = None,
                  force: bool = True) -> str:
    """Write the Hub folder (model.safetensors, config.json, README.md) of a registry model or exported folder, its card
    loading ``repo_id`` (where it will be published) or else the folder ``out``; without ``force``, a folder holding
    another model's export is refused in one sentence rather than overwritten."""
    from ..api import load
    from ..hub.cards import render_card
    from ..hub.export import save_pretrained
    from ..model_config import pretrained_cfg_of

    try:  # before the weights are fetched: a folder that cannot be made is one sentence, not a traceback after the download
        os.makedirs(out, exist_ok=True)
    except OSError as e:
        raise unwritable(out, e) from None
    model = load(name, revision=revision, progress=progress)
    cfg = pretrained_cfg_of(model)
    held = exported_name(out)
    if not force and held is not None and held != cfg["name"]:
        raise InvalidArgumentError(f"{out} holds the export of {held or 'another model'}: pass --force to overwrite it, or -o to "
                                   "write elsewhere.")
    save_pretrained(model, out, card=render_card(cfg, target=out, repo_id=repo_id))
    return out


def exported_name(folder: str) -> str | None:
    """The model whose export ``folder`` holds (its config.json's name; "" when its weights or config are there but the
    name cannot be read); None where it holds no export."""
    import json

    from ..files import CONFIG_NAME, WEIGHTS_NAME

    if not any(os.path.lexists(os.path.join(folder, f)) for f in (CONFIG_NAME, WEIGHTS_NAME)):
        return None
    try:
        with open(os.path.join(folder, CONFIG_NAME)) as f:
            name = json.load(f).get("name")
    except (OSError, ValueError, AttributeError):
        return ""
    return name if isinstance(name, str) else ""
