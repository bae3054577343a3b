"""Files the zoo writes and reads, with no torch needed: their names, their hashes, atomic writes, and the lock that
keeps one writer per output folder.

Everything that enters a cache or an output folder is written to a temporary file beside its
destination and renamed into place, so a crash or a kill never leaves a torn file behind. A temporary's name carries
its writer's process id (``.NAME.PID-RANDOM.tmp``), so the next writer of its kind can tell one a killed process left
from one being written now and remove it (:func:`sweep_temporaries`).
"""

from __future__ import annotations

import codecs
import contextlib
import errno
import hashlib
import json
import os
import re
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from .errors import OutputError

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
_TEMPORARY = re.compile(r"^\..+\.(\d+)-[^.]*\.tmp$")  # what atomic_path names its temporaries: .NAME.PID-RANDOM.tmp


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def current_umask() -> int:
    """The process umask (reading it means setting it, so it is set straight back)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


# What a write answers when the disk, not the data, is the problem: full, over a size limit or a quota, read-only.
DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EROFS})


def unwritable(path: str | os.PathLike, error: BaseException) -> OutputError:
    """The one-sentence error of a ``path`` that could not be written; its ``strerror`` is the reason alone, for callers
    that catch OSError and name the reason in their own sentence."""
    reason = (getattr(error, "strerror", None) or str(error).strip() or type(error).__name__).splitlines()[0].rstrip(".")
    if isinstance(error, (FileExistsError, NotADirectoryError, IsADirectoryError)):
        reason, fix = f"{reason}; {_blocker(Path(path))} is in the way", "choose another path"
    elif isinstance(error, OSError) and error.errno not in DISK_ERRNOS:
        fix = "choose a folder this user can write"
    else:  # the disk's refusal, or a writer library's report of one
        fix = "free some space (or choose a writable disk) and try again"
    failure = OutputError(f"Could not write {os.fspath(path)} ({reason}): {fix}.")
    failure.strerror = reason
    return failure


def _blocker(path: Path) -> str:
    """What stands where ``path`` (or a folder above it) would go: the nearest of them that exists, named as file or folder."""
    for part in [path, *path.parents]:
        if os.path.lexists(part):
            return f"the {'folder' if part.is_dir() else 'file'} {part}"
    return os.fspath(path)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, fsync: bool = False) -> Iterator[Path]:
    """A temporary path beside ``path`` to write; renamed onto ``path`` when the block succeeds, deleted otherwise.

    The file is made readable like any other (mkstemp makes it private) and, with ``fsync``,
    flushed to disk before the rename, so a crash mid-write never leaves a torn file at ``path``.
    What the file system refuses (a folder under a file, a folder where the file goes, a full or read-only disk) is an
    :class:`~cutmix_zoo.errors.OutputError` naming ``path``, as is a write in the block that fails for one of
    :data:`DISK_ERRNOS`.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}-", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise unwritable(path, e) from None
    os.close(fd)
    try:
        try:
            yield Path(tmp)
        except OSError as e:
            if e.errno in DISK_ERRNOS and not isinstance(e, OutputError):
                raise unwritable(path, e) from None
            raise
        try:
            if fsync:
                with open(tmp, "rb") as f:
                    os.fsync(f.fileno())
            os.chmod(tmp, 0o644 & ~current_umask())
            os.replace(tmp, path)
        except OSError as e:
            raise unwritable(path, e) from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _alive(pid: int) -> bool:
    """Whether a process ``pid`` exists (one of another user's counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def sweep_temporaries(folder: str | os.PathLike, older_than: float | None = None) -> list[Path]:
    """Remove the stale temporaries :func:`atomic_path` left in ``folder`` and return them: those whose writer is no longer
    running (killed mid-write), and with ``older_than`` (when this process took the folder's :func:`output_lock`) any
    other process's written before that time. A temporary being written by a live process is left alone."""
    removed = []
    with contextlib.suppress(OSError):
        for entry in os.scandir(os.fspath(folder)):
            match = _TEMPORARY.match(entry.name)
            if match is None or int(match.group(1)) == os.getpid() or not entry.is_file(follow_symlinks=False):
                continue
            if _alive(int(match.group(1))) and (older_than is None or entry.stat().st_mtime >= older_than):
                continue
            with contextlib.suppress(FileNotFoundError):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
    return removed


@contextlib.contextmanager
def output_lock(folder: str | os.PathLike, command: str, locks: str | os.PathLike) -> Iterator[Path]:
    """Hold ``folder`` as this process's while the block runs: a second writer is refused at once with one sentence naming
    the holder (:class:`~cutmix_zoo.errors.OutputError`), and the stale temporaries of earlier writers are swept first.

    The lock is a file in ``locks`` (the zoo cache's ``.locks/outputs/``) named by the folder's real path, so the folder
    itself holds only what its writer writes (an export stays a clean Hub folder); lock files are never deleted, since
    deleting one that another process has open would let two hold it.
    """
    from filelock import FileLock, Timeout

    folder = Path(folder)
    stem = hashlib.sha256(str(folder.resolve()).encode()).hexdigest()[:32]
    holder = Path(locks) / f"{stem}.json"
    try:
        Path(locks).mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(Path(locks) / f"{stem}.lock"))
        lock.acquire(timeout=0)
    except Timeout:
        raise OutputError(f"{folder} is being written by {_holder(holder)}: wait for it to finish, or choose another folder.") from None
    except OSError as e:
        raise OutputError(f"The lock folder {locks} cannot be written ({e.strerror or e}), so {folder} cannot be claimed: set "
                          "CUTMIX_ZOO_CACHE to a writable folder.") from None
    taken = time.time()
    try:
        with contextlib.suppress(OSError):
            write_text_atomic(holder, json.dumps({"pid": os.getpid(), "command": command, "started": taken, "folder": str(folder)}) + "\n")
        sweep_temporaries(folder, older_than=taken)
        yield folder
    finally:
        with contextlib.suppress(OSError):
            os.unlink(holder)
        lock.release()


def _holder(holder: Path) -> str:
    """Who holds a lock, as its holder file says: the command, its process id and when it started."""
    try:
        record = json.loads(holder.read_text())
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(record["started"])))
        return f"another {record['command']} (process {int(record['pid'])}, started {started})"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write a text file atomically (see :func:`atomic_path`)."""
    with atomic_path(path) as tmp:
        try:
            tmp.write_text(text)
        except OSError as e:
            raise unwritable(path, e) from None
    return Path(path)


def not_a_checkpoint(path: str | os.PathLike) -> str | None:
    """What ``path`` is, from its first bytes, when it is plainly no PyTorch checkpoint (an HTML page, a safetensors
    file, gzip, text, nothing); None when it may be one (a zip archive or a pickle)."""
    with open(path, "rb") as f:
        head = f.read(1024)
        size = os.fstat(f.fileno()).st_size
    if not head:
        return "an empty file"
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if text.startswith((b"<!doctype html", b"<html", b"<head", b"<body")) or (text.startswith(b"<") and b"<html" in text):
        return "an HTML page"
    if len(head) > 9 and head[8:10] in (b'{"', b"{}") and 0 < int.from_bytes(head[:8], "little") <= size - 8:
        return "a safetensors file"
    if head.startswith(b"\x1f\x8b"):
        return "a gzip-compressed file"
    if head.startswith((b"PK\x03\x04", b"\x80")):
        return None  # torch.save's zip format, or a (legacy) pickle
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head)  # not final: a character cut at 1024 bytes is no error
    except UnicodeDecodeError:
        return None
    return "a text file" if text[:1].isascii() and b"\x00" not in head else None
