"""What every command shares: tables on stdout, and one error line with its exit code instead of a traceback."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from ..errors import ZooError, exit_code


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
