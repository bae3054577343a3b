"""Files the zoo writes and reads, with no torch needed: their names, their hashes, and atomic writes.

Everything that enters a cache or an output folder is written to a temporary file beside its
destination and renamed into place, so a crash or a kill never leaves a torn file behind.
"""

from __future__ import annotations

import codecs
import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


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


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, fsync: bool = False) -> Iterator[Path]:
    """A temporary path beside ``path`` to write; renamed onto ``path`` when the block succeeds, deleted otherwise.

    The file is made readable like any other (mkstemp makes it private) and, with ``fsync``,
    flushed to disk before the rename, so a crash mid-write never leaves a torn file at ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        if fsync:
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
        os.chmod(tmp, 0o644 & ~current_umask())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write a text file atomically (see :func:`atomic_path`)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
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
