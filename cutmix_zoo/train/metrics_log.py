"""A training run's log: JSON lines in OUTPUT/metrics.jsonl, and TensorBoard scalars when tensorboard is installed.

A kill in the middle of an append leaves a last line without its newline: :func:`read_metrics` skips it, and the next
writer cuts it off before it appends, so the log never holds a torn line in its middle.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import TrainingError
from .config import METRICS


class MetricsLog:
    """JSON lines in OUTPUT/metrics.jsonl (and TensorBoard scalars when tensorboard is installed), rank 0 only.

    A line that cannot be written (a full disk, a folder made read-only) stops the run with ``failed(path, error)``,
    which :func:`.loop.setup` makes :func:`.failures.unwritable`'s one sentence about what the run's files still hold.
    """

    def __init__(self, output: Path, enabled: bool) -> None:
        self.enabled = enabled
        self.path = output / METRICS
        self.failed: Callable[[Path, OSError], Exception] = lambda path, error: TrainingError(
            f"Could not write {path} ({error.strerror or error}): free some space or make the folder writable.")
        self.tb = None
        self.repaired = False
        if enabled:
            with contextlib.suppress(ImportError):
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(output / "tensorboard"))

    def write(self, record: dict[str, Any], step: int | None = None) -> None:
        """Append ``record`` as one line; its numbers also go to TensorBoard at ``step`` when given."""
        if not self.enabled:
            return
        try:
            if not self.repaired:
                cut_torn_line(self.path)
                self.repaired = True
            with open(self.path, "a") as f:
                f.write(json.dumps(record) + "\n")
        except OSError as e:
            raise self.failed(self.path, e) from None
        if self.tb is not None and step is not None:
            for k, v in record.items():
                if isinstance(v, (int, float)) and k not in ("epoch", "step"):
                    self.tb.add_scalar(f"{record.get('event', 'run')}/{k}", v, step)


def cut_torn_line(path: str | os.PathLike) -> bool:
    """Cut off a last line without its newline (a kill mid-append), so that the next line starts on a line of its own;
    returns whether there was one. Only the file's tail is read; a missing file, or one that is no regular file (a
    device, a pipe), has no torn line."""
    try:
        with open(path, "rb+") as f:
            size = f.seek(0, os.SEEK_END)
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode) or size == 0:
                return False
            f.seek(size - 1)
            if f.read(1) == b"\n":
                return False
            end = size
            while end > 0:
                start = max(0, end - (1 << 16))
                f.seek(start)
                newline = f.read(end - start).rfind(b"\n")
                if newline >= 0:
                    f.truncate(start + newline + 1)
                    return True
                end = start
            f.truncate(0)
            return True
    except FileNotFoundError:
        return False


def read_metrics(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The records of a metrics.jsonl, a torn last line (no newline: a kill mid-append) skipped."""
    text = Path(path).read_text()
    lines = text.split("\n")[:-1]  # what follows the last newline is torn (or empty)
    return [json.loads(line) for line in lines if line.strip()]
