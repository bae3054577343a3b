"""The original release as a source of weights: its file downloaded once, checked, unpacked, converted and cached.

The original files (``torch.save`` checkpoints, some inside a Dropbox folder zip) are fetched only where the Hub has no
copy. Every step is bounded: connecting within :data:`CONNECT_TIMEOUT` seconds, no more than :data:`READ_TIMEOUT`
seconds without a byte, the whole download within ``CUTMIX_ZOO_DOWNLOAD_TIMEOUT`` (:func:`download_timeout`); a zip is
unpacked only as far as a checkpoint can be large (:data:`MAX_CHECKPOINT_BYTES`, :data:`MAX_ZIP_RATIO`). A transfer
that fails raises :class:`TransferError`, whose clause the caller puts beside the Hub's in one sentence.
"""

from __future__ import annotations

import json
import logging
import math
import os
import stat
import tempfile
import threading
import time
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

from ..errors import DownloadError, InvalidArgumentError
from ..files import DISK_ERRNOS, WEIGHTS_NAME, sha256_file, write_text_atomic
from ..model_config import ModelConfig
from ..registry import Entry
from .cache import SOURCE_NAME, download_lock
from .convert import load_original, write_converted
from .network import is_timeout, network_reason, short_reason

CHECKPOINT_SUFFIXES = (".pth.tar", ".pth", ".pt", ".tar")
CONNECT_TIMEOUT = 2.0  # seconds to connect to the original release's server: Linux resends a lost SYN after 1 s, so one loss still connects
READ_TIMEOUT = 60.0  # seconds a download of the original may go without a byte, so slow links still finish
DEFAULT_DOWNLOAD_TIMEOUT = 3600.0  # seconds a whole download of an original file may take (CUTMIX_ZOO_DOWNLOAD_TIMEOUT)
MAX_CHECKPOINT_BYTES = 4 << 30  # the largest original checkpoint, optimizer state included, is well under 1 GiB
DEADLINE_GRACE = 0.5  # seconds past the deadline the worker may take to report its own late transfer
MAX_ZIP_RATIO = 20  # trained weights barely compress (about 1.1 times); a zip bomb expands thousands of times
logger = logging.getLogger(__name__)


def download_timeout() -> float:
    """Seconds a whole download of an original file may take: ``CUTMIX_ZOO_DOWNLOAD_TIMEOUT``, read at call time."""
    raw = os.environ.get("CUTMIX_ZOO_DOWNLOAD_TIMEOUT", "").strip()
    if not raw:
        return DEFAULT_DOWNLOAD_TIMEOUT
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise InvalidArgumentError(f"CUTMIX_ZOO_DOWNLOAD_TIMEOUT must be a positive number of seconds, not {raw!r}.")
    return value


class TransferError(DownloadError):
    """The original release's server did not deliver the file; ``clause`` says how, as a clause after its URL."""

    def __init__(self, url: str, clause: str) -> None:
        super().__init__(f"The original release file {url} {clause}.")
        self.url, self.clause = url, clause


def _bytes(n: int) -> str:
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n:,} bytes"


def _blocks(response: Any) -> Iterator[bytes]:
    """The body as it arrives (urllib3 2's ``read1``), so a stall or a deadline sees every byte that came."""
    read1 = getattr(response.raw, "read1", None)
    if read1 is None:  # urllib3 1.x
        yield from response.iter_content(1 << 16)
        return
    while True:
        block = read1(1 << 20, decode_content=True)
        if not block:
            return
        yield block


def _download(url: str, dest: Path, progress: bool, desc: str, timeout: float) -> str:
    """Stream ``url`` into ``dest`` within ``timeout`` seconds in all, returning its sha256; a failed, short or late
    transfer raises a :class:`TransferError` that says how many bytes had arrived.

    The deadline covers the whole exchange, a server that trickles its headers included (the HTTP client waits for them
    with only a per-read timeout): the transfer runs in a worker thread, and at the deadline this thread stops waiting,
    tells the worker to stop at its next byte, and raises, so the download lock is never held longer.
    """
    outcome: dict[str, Any] = {"arrived": 0}

    def work() -> None:
        try:
            outcome["digest"] = _stream(url, dest, progress, desc, timeout, outcome)
        except BaseException as e:  # noqa: BLE001 - handed to the waiting thread, which raises it
            outcome["error"] = e

    worker = threading.Thread(target=work, name=f"cutmix-zoo download of {desc}", daemon=True)
    worker.start()
    try:
        worker.join(timeout + DEADLINE_GRACE)
    finally:
        outcome["abandoned"] = worker.is_alive()
    if outcome["abandoned"]:
        raise TransferError(url, f"did not arrive within {timeout:g} s (CUTMIX_ZOO_DOWNLOAD_TIMEOUT): only "
                                 f"{outcome['arrived']:,} bytes came")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["digest"]


def _stream(url: str, dest: Path, progress: bool, desc: str, timeout: float, outcome: dict[str, Any]) -> str:
    """What :func:`_download` runs in its worker: the request and the body's blocks, each checked against the deadline;
    the bytes so far are kept in ``outcome["arrived"]``, and once ``outcome["abandoned"]`` is set the worker stops."""
    import hashlib

    import requests
    import urllib3
    from tqdm.auto import tqdm

    deadline = time.monotonic() + timeout
    between = min(READ_TIMEOUT, timeout)
    digest = hashlib.sha256()
    response = None
    arrived, expected = 0, None

    def wire_bytes() -> int:  # bytes as sent (gzip-encoded ones before decoding), to compare with Content-Length
        tell = getattr(getattr(response, "raw", None), "tell", None)
        return max(arrived, int(tell())) if callable(tell) else arrived

    def so_far() -> str:
        return f"{arrived:,} of {expected:,} bytes" if expected else f"{arrived:,} bytes"

    try:
        response = requests.get(url, stream=True, timeout=(min(CONNECT_TIMEOUT, timeout), between), allow_redirects=True,
                                headers={"Accept-Encoding": "identity"})
        with response:
            if response.status_code != 200:
                raise TransferError(url, f"answered HTTP {response.status_code} {response.reason or ''}".rstrip())
            expected = int(response.headers.get("Content-Length") or 0) or None
            with open(dest, "wb") as f, tqdm(total=expected, unit="B", unit_scale=True, desc=desc, disable=not progress) as bar:
                for block in _blocks(response):
                    if outcome.get("abandoned"):
                        return ""  # the caller gave up at the deadline and has said so
                    f.write(block)
                    digest.update(block)
                    arrived = wire_bytes() if response.headers.get("Content-Encoding") else arrived + len(block)
                    bar.update(arrived - bar.n)
                    outcome["arrived"] = arrived
                    if time.monotonic() > deadline:
                        raise TransferError(url, f"did not arrive within {timeout:g} s (CUTMIX_ZOO_DOWNLOAD_TIMEOUT): only "
                                                 f"{so_far()} came")
            arrived = wire_bytes()
    except DownloadError:
        raise
    except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as e:
        if isinstance(e, OSError) and e.errno in DISK_ERRNOS:  # the disk refused the write, not the network the read
            raise _cache_full(url, dest, e) from None
        arrived = wire_bytes()
        if response is None:
            raise TransferError(url, f"could not be reached ({network_reason(e)})") from e
        if is_timeout(e):
            raise TransferError(url, f"sent {so_far()} and then nothing for {between:g} s") from e
        raise TransferError(url, f"broke off after {so_far()} ({network_reason(e)})") from e
    if expected is not None and arrived != expected:
        raise TransferError(url, f"was cut short: {arrived:,} of {expected:,} bytes arrived")
    return digest.hexdigest()


def _cache_full(url: str, dest: Path, error: OSError) -> DownloadError:
    """The error of a download from ``url`` that the disk refused while writing ``dest`` (in a temporary folder of the
    entry's cache folder)."""
    reason = error.strerror or str(error) or type(error).__name__
    return DownloadError(f"The file from {url} could not be written into the cache {dest.parent.parent} ({reason}): free some "
                         "space there, or set CUTMIX_ZOO_CACHE to a folder with room.")


def _checkpoint_in_zip(archive: Path, dest: Path, url: str) -> str:
    """Extract the checkpoint of a Dropbox folder zip (``model_best.pth.tar`` preferred) to ``dest`` and return its name
    in the zip; nothing else is extracted, a symbolic link is not followed, and no more than a checkpoint's size
    (:data:`MAX_CHECKPOINT_BYTES`, :data:`MAX_ZIP_RATIO` times the compressed size) is written."""
    try:
        with zipfile.ZipFile(archive) as zf:
            files = [m for m in zf.infolist() if not m.is_dir()]
            links = [m for m in files if stat.S_ISLNK(m.external_attr >> 16)]
            members = [m for m in files if m not in links and m.filename.lower().endswith(CHECKPOINT_SUFFIXES)]
            if not members:
                linked = [m.filename for m in links if m.filename.lower().endswith(CHECKPOINT_SUFFIXES)]
                if linked:
                    raise DownloadError(f"The folder zip from {url} holds {linked[0]} as a symbolic link, not as a file; "
                                        "links in a downloaded zip are not followed.")
                names = ", ".join(zf.namelist()[:5]) or "nothing"
                raise DownloadError(f"The folder zip from {url} holds no checkpoint (.pth or .pth.tar), only: {names}.")
            best = [m for m in members if os.path.basename(m.filename) == "model_best.pth.tar"]
            member = (best or sorted(members, key=lambda m: m.file_size, reverse=True))[0]
            limit = min(MAX_CHECKPOINT_BYTES, MAX_ZIP_RATIO * max(member.compress_size, 1))
            if member.file_size > limit:
                raise DownloadError(f"The folder zip from {url} would expand {member.filename} from {_bytes(member.compress_size)} "
                                    f"to {_bytes(member.file_size)}, more than a checkpoint can be, so it was not unpacked.")
            written = 0
            with zf.open(member) as src, open(dest, "wb") as out:
                for block in iter(lambda: src.read(1 << 20), b""):
                    written += len(block)
                    if written > min(limit, member.file_size):
                        raise DownloadError(f"The folder zip from {url} holds more in {member.filename} than its "
                                            f"{_bytes(member.file_size)} header states, so it was not unpacked.")
                    out.write(block)
            return member.filename
    except BaseException as e:
        dest.unlink(missing_ok=True)  # nothing half-unpacked is left for a later step to read
        failure = _unpack_failure(url, dest, e)
        if failure is None:
            raise
        raise failure from e


def _unpack_failure(url: str, dest: Path, error: BaseException) -> DownloadError | None:
    """The one sentence of a failed unpacking of the folder zip from ``url`` into ``dest`` for what zipfile, zlib and
    the disk refuse; None for any other error (a DownloadError already, Ctrl-C), which goes on as it is."""
    if isinstance(error, (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError, zlib.error)):
        return DownloadError(f"The folder zip from {url} is damaged ({short_reason(error)}).")
    if isinstance(error, (RuntimeError, NotImplementedError)):  # an encrypted member, or a compression zipfile cannot read
        return DownloadError(f"The folder zip from {url} cannot be unpacked here ({short_reason(error)}).")
    if isinstance(error, OSError) and error.errno in DISK_ERRNOS:
        return _cache_full(url, dest, error)
    return None


def fetch_original(entry: Entry, expected: ModelConfig, progress: bool = True, force: bool = False) -> Path:
    """Download the original release file of ``entry`` once, verify it, convert it (checked against ``expected``, the
    entry's config) and cache the safetensors."""
    url = cast(str, entry.original_url)  # the fetch calls this only for entries with an original file
    timeout = download_timeout()
    with download_lock(entry, 2 * timeout, progress) as folder:  # the holder's own download is bounded by ``timeout``
        target = folder / WEIGHTS_NAME
        if target.is_file() and not force:
            logger.info("%s: converted by another process meanwhile (%s)", entry.name, target)
            return target
        try:
            digest, meta = _download_and_convert(entry, expected, url, folder, progress, timeout)
        except BaseException:
            if not any(folder.iterdir()):
                folder.rmdir()
            raise
        record = {"name": entry.name, "url": url, "sha256": digest, "layout": meta.get("layout"),
                  "converted_sha256": sha256_file(target), "downloaded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                  **{k: meta[k] for k in ("epoch", "best_err1", "best_err5") if k in meta}}
        write_text_atomic(folder / SOURCE_NAME, json.dumps(record, indent=2) + "\n")
        return target


def _download_and_convert(entry: Entry, expected: ModelConfig, url: str, folder: Path, progress: bool,
                          timeout: float) -> tuple[str, dict]:
    """Download into a temporary folder inside ``folder``, verify, unpack and convert into ``folder``'s weights file."""
    from ..files import not_a_checkpoint

    with tempfile.TemporaryDirectory(prefix=".download-", dir=folder) as tmp:
        raw = Path(tmp) / "download"
        digest = _download(url, raw, progress, entry.name, timeout)
        kind = not_a_checkpoint(raw)
        if kind is not None:
            removed = " (what a file host serves for a removed or rate-limited link)" if "HTML" in kind else ""
            wanted = "the folder zip" if entry.packaging == "folder_zip" else "the checkpoint"
            raise TransferError(url, f"sent {kind}{removed}, not {wanted}")
        if entry.sha256 is not None and digest != entry.sha256:
            raise DownloadError(f"The file downloaded from {url} has sha256 {digest}, not the registry's {entry.sha256}; it was deleted.")
        checkpoint, label = raw, url
        if entry.packaging == "folder_zip":
            if not zipfile.is_zipfile(raw):
                raise DownloadError(f"The file downloaded from {url} is not the folder zip a Dropbox shared folder gives.")
            checkpoint = Path(tmp) / "checkpoint.pth.tar"
            label = f"{_checkpoint_in_zip(raw, checkpoint, url)} in the folder zip from {url}"
        state, meta = load_original(checkpoint, label=label)
        write_converted(expected, state, folder / WEIGHTS_NAME, source_url=url, source_sha256=digest, label=label)
    return digest, meta
