"""How a training run stops before its end, and what it says then.

- On request: SIGTERM or Ctrl-C sets a :class:`StopFlag`, which the loop checks (all ranks agreeing) and answers
  with a checkpoint and :func:`interrupted`.
- A loss or weights that became a NaN or an infinity: :func:`check_finite` and :func:`check_weights` stop the run
  (logged as "diverged") and the checkpoint on disk stays the last finite one.
- A file that cannot be written (a full disk, a folder made read-only): :func:`writing` and :func:`unwritable`.
- An image that cannot be read: the loop saves the steps done, :func:`stopped_by_data` says how to continue.

Each stop is one sentence that says what the run's files still hold (:func:`kept`) and what to do next.
"""

from __future__ import annotations

import contextlib
import math
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.distributed as dist
from torch import nn

from ..errors import TrainingError
from .config import BEST_WEIGHTS, CHECKPOINT_NAME
from .data import DataError
from .evaluation import nonfinite_tensors
from .metrics_log import MetricsLog
from .ranks import Ranks


class Run(Protocol):
    """What a stop reads of a run: its folder, its log, the weights it trains, its steps per epoch, the (epoch, step) of the
    checkpoint in its folder (None before one was written or resumed) and its best epoch so far (``best["epoch"]``, -1 for
    none). The classifier's :class:`.state.Run` and the detection trainer's state both are one."""

    output: Path
    log: MetricsLog
    module: nn.Module
    steps: int
    saved: tuple[int, int] | None
    best: dict[str, Any]


class StopFlag:
    """Set by SIGTERM (or SIGINT); the loop saves a checkpoint at the next check and exits."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopFlag:
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(ValueError):  # not the main thread: no handler, no graceful stop
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        self.requested = True

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def agreed(self, ranks: Ranks) -> bool:
        """Whether any rank was asked to stop (a collective: every rank must call it at the same step)."""
        if ranks.world_size == 1:
            return self.requested
        flag = torch.tensor([float(self.requested)], device=ranks.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())


def interrupted(run: Run, epoch: int, step: int) -> None:
    """Log that the run stopped on request, to continue at ``step`` of ``epoch`` from the checkpoint just saved."""
    run.log.write({"event": "interrupted", "epoch": epoch, "step": step})


def check_finite(run: Run, what: str, value: float, at: str, epoch: int, step: int) -> None:
    """Stop the run with :func:`diverged`'s error when ``value`` (its ``what`` at ``at``) is a NaN or an infinity."""
    if not math.isfinite(value):
        raise diverged(run, what, str(value), at, epoch, step)


def check_weights(run: Run, epoch: int, step: int) -> None:
    """Stop the run with :func:`diverged`'s error, before its checkpoint of ``step`` of ``epoch`` is written, when a
    weight is a NaN or an infinity (DDP keeps the weights identical, so every rank decides the same)."""
    if nonfinite_tensors(run.module):
        at = f"epoch {epoch + 1}, step {step}" if step else f"the end of epoch {epoch}"
        raise diverged(run, "weights", "non-finite", at, epoch, step)


@contextlib.contextmanager
def writing(run: Run, path: Path) -> Iterator[None]:
    """Write ``path`` inside this block: an OSError there stops the run with :func:`unwritable`'s error."""
    try:
        yield
    except OSError as e:
        raise unwritable(run, path, e) from None


def kept(run: Run) -> str:
    """What the run's files still hold, for a message about a run that stopped."""
    if run.saved is None:
        weights = "no checkpoint of this run was written"
    else:
        epoch, step = run.saved
        position = (f"epoch {epoch + 1}, step {step}" if step else f"the end of epoch {epoch}" if epoch else "the start")
        weights = f"{run.output / CHECKPOINT_NAME} keeps the weights of {position}"
    if run.best["epoch"] >= 0:
        weights += f", {run.output / BEST_WEIGHTS} those of epoch {run.best['epoch'] + 1}"
    return weights


def diverged(run: Run, what: str, value: str, at: str, epoch: int, step: int) -> TrainingError:
    """The error (logged as a "diverged" event) of a run whose ``what`` became ``value`` (a NaN or an infinity) at ``at``."""
    run.log.write({"event": "diverged", "epoch": epoch, "step": step, "what": what, "value": value})
    return TrainingError(f"The {what} became {value} at {at} (the training diverged): {kept(run)}; "
                         "start a new run with a lower --lr.")


def unwritable(run: Run, path: Path, error: OSError) -> TrainingError:
    """The error of a run that could not write ``path`` (a full disk, a folder made read-only)."""
    reason = error.strerror or str(error) or type(error).__name__
    return TrainingError(f"Could not write {path} ({reason}): {kept(run)}; free some space (or make the folder writable) "
                         f"and continue with --resume {run.output}.")


def stopped_by_data(run: Run, error: DataError, epoch: int, step: int) -> DataError:
    """The error of a run that met an unreadable image after ``step`` steps of ``epoch``, whose checkpoint the loop has
    just saved; the stop is logged."""
    where = (f"after training epoch {epoch + 1}, before its evaluation" if step == run.steps
             else f"at epoch {epoch + 1}, step {step} of {run.steps}")
    message = (f"{str(error).rstrip('.')}; the run stopped {where}, saved in {run.output / CHECKPOINT_NAME}, "
               f"so --resume {run.output} continues it.")
    run.log.write({"event": "stopped", "epoch": epoch, "step": step, "error": message})
    return DataError(message)
