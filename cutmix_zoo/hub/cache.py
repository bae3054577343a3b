"""The local caches of weights: where they are, what is in them, and how a file enters one and is trusted again.

Two caches hold weights: huggingface_hub's (files from a Hub repo, looked up with ``try_to_load_from_cache``) and the
zoo's own (``CUTMIX_ZOO_CACHE``: original-release files converted to safetensors, one folder per entry, with the
conversion record ``source.json``). Looking a file up never touches the network. Files only ever enter the zoo's cache
whole: a download goes to a temporary file beside its destination and is renamed into place, under a file lock
(:func:`download_lock`) so that concurrent processes download once, and what a killed download left is removed by the
next holder of the lock. A cached file is checked before it is used (:func:`trusted`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..errors import DownloadError, InvalidArgumentError, WeightsError
from ..files import CONFIG_NAME, WEIGHTS_NAME, sha256_file, write_text_atomic
from ..registry import Entry

SOURCE_NAME = "source.json"
WAIT_NOTICE_AFTER = 2.0  # seconds a process waits for another's download lock before it says so
logger = logging.getLogger(__name__)
_TRUE = {"1", "on", "yes", "true"}


def cache_dir() -> Path:
    """The zoo's own cache of converted originals: ``CUTMIX_ZOO_CACHE``, else ``~/.cache/cutmix_zoo``."""
    if os.environ.get("CUTMIX_ZOO_CACHE"):
        return Path(os.environ["CUTMIX_ZOO_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "cutmix_zoo"


def output_locks() -> Path:
    """Where the locks of output folders live (:func:`cutmix_zoo.files.output_lock`): ``.locks/outputs/`` in the zoo's cache."""
    return cache_dir() / ".locks" / "outputs"


def is_offline() -> bool:
    """``HF_HUB_OFFLINE`` read at call time, so a running notebook can switch it."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE


def check_hub_endpoint() -> None:
    """Refuse an ``HF_ENDPOINT`` that is no http(s) URL in one sentence, before huggingface_hub is imported: its
    constants module parses the variable at import and fails there with a bare ValueError."""
    endpoint = os.environ.get("HF_ENDPOINT")
    if not endpoint:
        return
    try:
        parts = urlsplit(endpoint)
        host = parts.hostname
    except ValueError as e:
        raise InvalidArgumentError(f"HF_ENDPOINT={endpoint!r} is not a URL ({e}): set it to the Hub's address, e.g. "
                                   "https://huggingface.co, or unset it.") from None
    if parts.scheme not in ("http", "https") or not host:
        raise InvalidArgumentError(f"HF_ENDPOINT={endpoint!r} is not an http(s) URL with a host: set it to the Hub's address, "
                                   "e.g. https://huggingface.co, or unset it.")


def hub_cache_dir() -> str | None:
    """The Hub cache huggingface_hub would use, resolved from the environment at call time."""
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    if os.environ.get("HF_HOME"):
        return os.path.join(os.path.expanduser(os.environ["HF_HOME"]), "hub")
    return None


def original_file(entry: Entry) -> Path:
    """Where the converted original-release weights of ``entry`` are cached."""
    return cache_dir() / entry.name / WEIGHTS_NAME


def cached_hub_files(entry: Entry, revision: str | None = None,
                     folder: str | None = None) -> tuple[Path, Path | None] | None:
    """The Hub cache's weights file of ``entry`` and its config.json (None where that is not cached), with no network
    call; None where the weights are not cached. ``folder`` is the Hub cache (None: huggingface_hub's)."""
    check_hub_endpoint()
    from huggingface_hub import try_to_load_from_cache

    folder = folder or hub_cache_dir()
    found = try_to_load_from_cache(entry.hub_repo, WEIGHTS_NAME, cache_dir=folder, revision=revision)
    if not (isinstance(found, str) and os.path.isfile(found)):
        return None
    config = try_to_load_from_cache(entry.hub_repo, CONFIG_NAME, cache_dir=folder, revision=revision)
    return Path(found), Path(config) if isinstance(config, str) and os.path.isfile(config) else None


def cached_original(entry: Entry, revision: str | None = None) -> Path | None:
    """The converted original-release file of ``entry`` where it is cached; a pinned Hub revision never names it."""
    return original_file(entry) if revision is None and original_file(entry).is_file() else None


def cached_file(entry: Entry, revision: str | None = None) -> Path | None:
    """A cached weights file for ``entry`` (Hub cache first, then converted originals), found with no network call."""
    hub = cached_hub_files(entry, revision)
    return hub[0] if hub is not None else cached_original(entry, revision)


def read_json(path: Path) -> dict[str, Any] | None:
    """The JSON object in ``path``; None where the file is absent, torn or holds something else."""
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return None  # absent or torn: treated as no record
    return value if isinstance(value, dict) else None


def _marker(entry: Entry) -> Path:
    return cache_dir() / ".verified" / f"{entry.name}.json"


def _stamp(path: Path) -> list[int]:
    st = path.stat()
    return [st.st_ino, st.st_size, st.st_mtime_ns]


def recorded_sha256(entry: Entry, path: Path) -> str | None:
    """The sha256 a cached file was written with: the registry's (bundled), the conversion record's (original release),
    the Hub's LFS blob name, or for a plain Hub blob what its first use recorded; None where nothing was recorded."""
    real = path.resolve()
    if entry.bundled:
        return entry.sha256
    if real == original_file(entry).resolve():
        record = read_json(cache_dir() / entry.name / SOURCE_NAME)
        return record.get("converted_sha256") if record else None
    if len(real.name) == 64 and all(c in "0123456789abcdef" for c in real.name):
        return real.name  # the Hub's LFS blobs are named by their sha256
    marker = read_json(_marker(entry))  # a plain blob: what its first use recorded
    return marker.get("sha256") if marker and marker.get("file") == str(real) else None


def trusted(entry: Entry, path: Path, full: bool = False) -> Path:
    """``path`` after checking that it is the file that was written: cheap when it has not changed since it was last
    verified (its inode, size and mtime match the marker), a sha256 against the recorded one otherwise (or with ``full``).

    A flipped bit written through the file system, or another file put in its place, is one sentence, never a silent
    load of wrong weights; bit rot that keeps the file's stamp is what ``cutmix-zoo verify`` (and ``download``) catch.
    """
    real = path.resolve()
    marker = read_json(_marker(entry))
    if not full and marker and marker.get("file") == str(real) and marker.get("stamp") == _stamp(real) and marker.get("finite"):
        return path
    digest = sha256_file(real)
    expected = recorded_sha256(entry, path)
    if expected is not None and digest != expected:
        raise WeightsError(
            f"The cached weights of {entry.name} ({path}) are not the file that was written (sha256 {digest[:12]}..., "
            f"recorded {expected[:12]}...): they were changed or corrupted; run `cutmix-zoo download --force {entry.name}`.")
    _check_finite_file(entry, path)
    with contextlib.suppress(OSError):  # a read-only cache still loads; it is hashed again next time
        write_text_atomic(_marker(entry), json.dumps({"file": str(real), "stamp": _stamp(real), "sha256": digest, "finite": True}) + "\n")
    return path


def _check_finite_file(entry: Entry, path: Path) -> None:
    """Refuse a cached safetensors file holding a NaN or an infinity (a Hub copy uploaded broken), in one sentence; checked
    when the file is hashed, so a warm load of an unchanged file does not read its values again."""
    from ..fastload import nonfinite_in_safetensors, refuse_nonfinite

    try:
        bad = nonfinite_in_safetensors(path)
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as e:
        raise WeightsError(f"The cached weights of {entry.name} ({path}) are not a readable safetensors file ({e}); "
                           f"run `cutmix-zoo download --force {entry.name}`.") from None
    refuse_nonfinite(bad, str(path), f"so they were not loaded; run `cutmix-zoo download --force {entry.name}` or pass weights=FILE")


@contextlib.contextmanager
def download_lock(entry: Entry, wait: float, progress: bool) -> Iterator[Path]:
    """The entry's cache folder, held under an inter-process file lock, emptied of what a killed download left there.

    A process that has to wait says whom it waits for (a warning, or an info line with ``progress`` off) and gives up
    after ``wait`` seconds. The lock file lives in ``.locks/`` and is never deleted: deleting a lock file that another
    process has open lets two processes hold "the" lock at once.
    """
    from filelock import FileLock, Timeout

    lock_path = cache_dir() / ".locks" / f"{entry.name}.lock"
    try:
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        lock_path.touch(exist_ok=True)
    except OSError as e:
        raise DownloadError(f"The cache folder {cache_dir()} cannot be written ({e.strerror or e}): set CUTMIX_ZOO_CACHE to a "
                            f"writable folder to fetch {entry.name}.") from e
    lock = FileLock(str(lock_path))
    try:
        lock.acquire(timeout=min(WAIT_NOTICE_AFTER, wait))
    except Timeout:
        (logger.warning if progress else logger.info)(
            "Waiting for another process that is downloading %s (it holds %s); giving up after %g s.", entry.name, lock_path, wait)
        try:
            lock.acquire(timeout=wait)
        except Timeout as e:
            raise DownloadError(f"Another process held the download lock of {entry.name} ({lock_path}) for over {wait:g} s; "
                                "if it is stuck, stop it and try again.") from e
    try:
        folder = cache_dir() / entry.name
        folder.mkdir(parents=True, exist_ok=True)
        _remove_partials(folder)
        yield folder
    finally:
        lock.release()


def _remove_partials(folder: Path) -> None:
    """Delete what a killed download left in ``folder``: called under its lock, so no live process is writing there."""
    for path in folder.iterdir():
        if path.name.startswith(".download-") and path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        elif path.name.startswith(".") and path.name.endswith(".tmp") and path.is_file():
            path.unlink(missing_ok=True)
        else:
            continue
        logger.info("Removed %s, left by a download that was killed.", path)


def cache_status(entry: Entry) -> dict[str, Any]:
    """What is cached for ``entry``: the file that would load, and the recorded original sha256."""
    found = entry.bundled_file or cached_file(entry)
    status: dict[str, Any] = {"cached_file": str(found) if found else None}
    record = cache_dir() / entry.name / SOURCE_NAME
    data = read_json(record)  # a torn or foreign record is shown as none, as every reader of it takes it
    if data is not None:
        status["downloaded_sha256"] = data.get("sha256")
    return status
