"""Atomic training checkpoints, the RNG states an exact resume needs, the run files a resume carries along, and the
claim a run holds on its --output folder (one writer per folder, another run's files kept unless --force).

A checkpoint is written to a temporary file in the same folder, flushed to disk, then renamed
over the previous one, so a crash or a kill mid-write never leaves a torn file. It holds only
tensors and plain Python values and is read back with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from ..errors import TrainingError, WeightsError
from ..files import atomic_path, not_a_checkpoint, output_lock, sweep_temporaries, unwritable
from ..hub.cache import output_locks
from .config import BEST_WEIGHTS, CHECKPOINT_NAME, EXPORT_DIR, METRICS, check_output

RUN_FILES = (CHECKPOINT_NAME, BEST_WEIGHTS, EXPORT_DIR, METRICS)  # what a run leaves in its --output


def save_atomic(state: dict[str, Any], path: str | os.PathLike) -> Path:
    """``torch.save`` to a temporary file beside ``path``, fsync, then rename onto ``path``; a write the disk refuses is
    an OutputError (an OSError, which the loop reports with what the run's files still hold)."""
    with atomic_path(path, fsync=True) as tmp:
        try:
            torch.save(state, tmp)
        except RuntimeError as e:  # torch's zip writer reports a full or refused disk as "file write failed" and the like
            raise unwritable(path, e) from None
    return Path(path)


def load_checkpoint(path: str | os.PathLike, settings: str | None = None) -> dict[str, Any]:
    """A checkpoint written by :func:`save_atomic` (a folder means its ``checkpoint.pt``) that holds a run's ``settings``
    (``"args"``: the classification trainer's; ``"run"``: the detection trainer's; None: either); anything else is one
    sentence."""
    trainer = "the detection trainer" if settings == "run" else "cutmix_zoo.train"
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT_NAME
    if not path.is_file():
        raise WeightsError(f"There is no checkpoint at {path} to resume from.")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file is the same user error
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:200].rstrip(".")
        raise WeightsError(f"Could not read the checkpoint {path} ({reason}): resume from a checkpoint.pt that "
                           "cutmix_zoo.train wrote.") from None
    wanted = (settings,) if settings else ("args", "run")
    if not isinstance(checkpoint, dict) or not any(isinstance(checkpoint.get(key), dict) for key in wanted):
        kind = "a weights file" if not_a_checkpoint(path) == "a safetensors file" else "a file"
        raise WeightsError(f"{path} is {kind} with no {trainer} run's settings, not a checkpoint that {trainer} wrote "
                           "(a weights file starts a new run with --init).")
    return checkpoint


def rng_states(device: torch.device) -> dict[str, Any]:
    """This process's global RNG states: Python's, torch's CPU generator and the accelerator's."""
    states: dict[str, Any] = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if device.type == "cuda":
        states["cuda"] = torch.cuda.get_rng_state(device)
    return states


def set_rng_states(states: dict[str, Any], device: torch.device) -> None:
    """Restore what :func:`rng_states` captured."""
    random.setstate(as_tuple(states["python"]))
    torch.set_rng_state(states["torch"])
    if device.type == "cuda" and "cuda" in states:
        torch.cuda.set_rng_state(states["cuda"], device)


def as_tuple(value: Any) -> Any:
    """Lists back to tuples: ``random.Random.setstate`` needs the tuples a checkpoint may hand back as lists."""
    return tuple(as_tuple(v) for v in value) if isinstance(value, (list, tuple)) else value


def carry_run_files(resumed: Path, output: Path) -> None:
    """Resuming into another --output: copy the run's checkpoint, best weights and metrics there, so the export,
    the log and a later resume continue from B while A stays as it was."""
    checkpoint = resumed / CHECKPOINT_NAME if resumed.is_dir() else resumed
    source = checkpoint.parent
    if source.resolve() == output.resolve():
        return
    for src, name in ((checkpoint, CHECKPOINT_NAME), (source / BEST_WEIGHTS, BEST_WEIGHTS), (source / METRICS, METRICS)):
        if src.is_file() and not (output / name).exists():
            with atomic_path(output / name) as tmp:
                shutil.copyfile(src, tmp)


@contextlib.contextmanager
def claimed_output(args: argparse.Namespace) -> Iterator[None]:
    """Hold ``args.output`` for the run on rank 0 (:func:`~cutmix_zoo.files.output_lock`: a second run into it is refused,
    naming the first), after refusing a folder that holds another run (its checkpoint, best weights or export) unless
    ``--force`` (which removes its files, log included, first) or ``--resume`` of that very run; stale temporaries of
    killed writes in it and its export are swept."""
    if int(os.environ.get("RANK", "0")) != 0:
        yield
        return
    output = Path(args.output)
    check_output(output)
    with output_lock(output, "cutmix-zoo train", output_locks()):
        resumed = Path(args.resume) if args.resume else None
        own = resumed is not None and (resumed if resumed.is_dir() else resumed.parent).resolve() == output.resolve()
        found = [name for name in RUN_FILES if (output / name).exists()]
        if not any(name in found for name in RUN_FILES[:3]):
            found = []  # a log alone: a run that stopped before its first checkpoint, which this one continues the log of
        if found and not own:
            if not getattr(args, "force", False):
                raise TrainingError(f"--output {output} holds another run ({', '.join(found)}): continue it with --resume {output}, "
                                    "overwrite it with --force, or choose another --output.")
            for name in found:
                shutil.rmtree(output / name) if (output / name).is_dir() else (output / name).unlink()
        sweep_temporaries(output / EXPORT_DIR)
        yield
