"""The ``cutmix-zoo`` command: list, inspect, fetch, convert, export and train zoo models.

Every subcommand has ``--help``; data-producing ones take ``--json``. Exit codes: 0 success,
1 a failure while doing the work (download, file, training), 2 bad input (unknown name, bad
argument), 130 interrupted. Errors are one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from . import registry
from .errors import InvalidArgumentError, UnknownModelError, ZooError

EXIT_FAILURE, EXIT_USAGE = 1, 2


def _fmt_err(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _print_table(rows: list[list[str]], header: list[str]) -> None:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip())


def cmd_list(args: argparse.Namespace) -> int:
    names = registry.list_models(args.pattern)
    if not names:
        raise InvalidArgumentError(f"No model matches the pattern {args.pattern!r}; `cutmix-zoo list` shows them all.")
    defaults = {f"{a}.{t}" for a, t in registry.DEFAULT_TAGS.items()}
    if args.json:
        print(json.dumps([dict(registry.model_info(n), default=n in defaults) for n in names], indent=2))
        return 0
    rows = []
    for n in names:
        e = registry.get_entry(n)
        rows.append([n + (" *" if n in defaults else ""), e.dataset, e.method, _fmt_err(e.top1_err), _fmt_err(e.top5_err)])
    _print_table(rows, ["name (* = default of its architecture)", "dataset", "method", "top-1 err %", "top-5 err %"])
    return 0


def info_dict(name: str) -> dict[str, Any]:
    """model_info plus what is only known at run time: parameter count and cached files."""
    from .api import count_parameters

    info = registry.model_info(name)
    info["num_params"] = count_parameters(name)
    try:
        from .weights import cache_status

        info.update(cache_status(registry.get_entry(name)))
    except ImportError:
        pass
    return info


def cmd_info(args: argparse.Namespace) -> int:
    info = info_dict(args.name)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    for key, value in info.items():
        if key == "citation":
            continue
        print(f"{key + ':':<16} {value}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cutmix-zoo",
        description="The CutMix-pretrained ResNet/ResNeXt/PyramidNet weights (Yun et al., ICCV 2019) as a model zoo.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("list", help="list the registry's models", description="List registry models matching an fnmatch pattern.")
    p.add_argument("pattern", nargs="?", default="*", help="fnmatch pattern, e.g. 'resnet50.*' or '*_c100' (default: all)")
    p.add_argument("--json", action="store_true", help="print the full entries as JSON")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("info", help="show everything known about one model", description="Show a model's registry entry, size and cache state.")
    p.add_argument("name", help="registry name (arch.tag) or bare architecture")
    p.add_argument("--json", action="store_true", help="print as JSON")
    p.set_defaults(func=cmd_info)

    for name, (module, func, text) in DELEGATED.items():
        sub.add_parser(name, help=text, add_help=False)  # listed here, parsed by its own module (see main)
    return parser


DELEGATED: dict[str, tuple[str, str, str]] = {
    "train": ("cutmix_zoo.train", "train_main", "train a model with an original recipe (see `cutmix-zoo train --help`)"),
    "eval": ("cutmix_zoo.train", "eval_main", "evaluate a zoo model on an ImageFolder or CIFAR folder"),
}


def _run(argv: list[str]) -> int:
    if argv and argv[0] in DELEGATED:
        import importlib

        module, func, _ = DELEGATED[argv[0]]
        return getattr(importlib.import_module(module), func)(argv[1:])
    args = build_parser().parse_args(argv)
    return args.func(args)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``cutmix-zoo`` console script."""
    try:
        return _run(sys.argv[1:] if argv is None else argv)
    except (UnknownModelError, InvalidArgumentError) as e:
        print(f"cutmix-zoo: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except ZooError as e:
        print(f"cutmix-zoo: error: {e}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        print("cutmix-zoo: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
