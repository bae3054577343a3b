"""The ``cutmix-zoo`` command: list, inspect, fetch, convert, export and train zoo models.

Every subcommand has ``--help``; data-producing ones take ``--json``. Exit codes: 0 success,
1 a failure while doing the work (download, file, training), 2 bad input (unknown name, bad
argument), 130 interrupted. Errors are one line on stderr, never a traceback.

Each command is a module of this package holding ``NAME``, ``HELP``, ``add_parser(subparsers)`` (its
sub-parser: description and arguments) and ``run(args) -> int``; this module only builds the parser
from :data:`COMMANDS` and dispatches. Adding a command is writing such a module and naming it there.
Command modules import nothing heavy at their top (torch, the library's models) so that ``list``,
``info`` and ``--help`` start fast; only the chosen command's ``add_parser`` runs, and may import them.
"""

from __future__ import annotations

import argparse
import sys

from . import (
    cache,
    cam,
    cards,
    convert,
    demo,
    detect,
    download,
    evaluate,
    export,
    info,
    listing,
    localize,
    predict,
    publish,
    robustness,
    shapes,
    shard,
    train,
    transfer,
    verify,
)
from .common import UsageError, run_command

# Every command, in the order `cutmix-zoo --help` lists them.
COMMANDS = (listing, info, download, convert, cache, verify, cards, export, publish, shapes,
            shard, train, evaluate, demo, predict, cam, robustness, localize, transfer, detect)


def _version() -> str:
    """The installed distribution's version, else the package's own (a checkout that was never installed)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("cutmix-zoo")
    except PackageNotFoundError:
        from .. import __version__

        return __version__


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The ``cutmix-zoo`` parser with every command's sub-parser; with ``only``, that command's sub-parser alone in full and
    the others as their name and help (all ``cutmix-zoo --help`` shows), since building some (train, eval) imports torch."""
    return _build(only)[0]


def _build(only: str | None) -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    parser = argparse.ArgumentParser(
        prog="cutmix-zoo",
        description="The CutMix-pretrained ResNet/ResNeXt/PyramidNet weights (Yun et al., ICCV 2019) as a model zoo.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log which source each model came from (first, before COMMAND)")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    parsers = {}
    for command in COMMANDS:
        if only is None or command.NAME == only:
            parsers[command.NAME] = command.add_parser(subparsers)
        else:
            parsers[command.NAME] = subparsers.add_parser(command.NAME, help=command.HELP, add_help=False)
    return parser, parsers


def _run(argv: list[str]) -> int:
    """Parse ``argv`` and run the command it names; argument errors exit 2 with the command's usage, as argparse's do."""
    chosen = next((a for a in argv if not a.startswith("-")), "")  # the top-level options take no values
    parser, parsers = _build(chosen)
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        parsers[args.command].error(f"unrecognized arguments: {' '.join(unknown)}")
    args.argv = argv[argv.index(chosen) + 1:]  # what followed the command's name, as the reports record it
    command = next(c for c in COMMANDS if c.NAME == args.command)
    try:
        return command.run(args)
    except UsageError as e:
        parsers[args.command].error(str(e))


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``cutmix-zoo`` console script."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] in (["-v"], ["--verbose"]):  # the library's log lines (logging.getLogger("cutmix_zoo.*")) on stderr
        import logging

        logging.basicConfig(format="cutmix-zoo: %(message)s")
        logging.getLogger("cutmix_zoo").setLevel(logging.INFO)
        argv = argv[1:]
    if not argv:  # no command: the command list, as `cutmix-zoo --help` shows it, and the usage error's exit code
        print(build_parser(only="").format_help(), end="", file=sys.stderr)
        return 2
    return run_command(_run, argv)


if __name__ == "__main__":
    sys.exit(main())
