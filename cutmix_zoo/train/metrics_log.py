"""A training run's log: JSON lines in OUTPUT/metrics.jsonl, and TensorBoard scalars when tensorboard is installed."""

from __future__ import annotations

import contextlib
import json
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
        if enabled:
            with contextlib.suppress(ImportError):
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(output / "tensorboard"))

    def write(self, record: dict[str, Any], step: int | None = None) -> None:
        """Append ``record`` as one line; its numbers also go to TensorBoard at ``step`` when given."""
        if not self.enabled:
            return
        try:
            with open(self.path, "a") as f:
                f.write(json.dumps(record) + "\n")
        except OSError as e:
            raise self.failed(self.path, e) from None
        if self.tb is not None and step is not None:
            for k, v in record.items():
                if isinstance(v, (int, float)) and k not in ("epoch", "step"):
                    self.tb.add_scalar(f"{record.get('event', 'run')}/{k}", v, step)
