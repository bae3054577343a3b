"""Where a model's weights file comes from: the Hugging Face Hub, else the original release.

Order for ``load(name)``: a file already cached (the Hub's cache, then the zoo's converted
originals) with no network call; then ``model.safetensors`` from the entry's Hub repo through
``hf_hub_download``; then, where the Hub has no such repo or file, the original Dropbox URL,
downloaded once, checked, converted to safetensors and cached. Files only ever enter a cache
whole: downloads go to a temporary file beside their destination and are renamed into place, under
a file lock so that concurrent processes download once.

Every failure is bounded in time and one sentence: the Hub is asked once, without huggingface_hub's
retries, before anything is downloaded from it; a connection that never completes gives up within seconds
(:data:`HUB_TIMEOUT`, :data:`CONNECT_TIMEOUT`); a download of the original has an overall deadline
(``CUTMIX_ZOO_DOWNLOAD_TIMEOUT``); a zip is unpacked only as far as a checkpoint can be large. Which
source a model came from, and why one was skipped, is logged (``logging.getLogger(__name__)``; the
CLI shows it with ``-v``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import shutil
import socket
import stat
import tempfile
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

from ..errors import DownloadError, InvalidArgumentError, WeightsError
from ..files import CONFIG_NAME, WEIGHTS_NAME, sha256_file, write_text_atomic
from ..registry import LIBRARY_NAME, Entry

SOURCE_NAME = "source.json"
CHECKPOINT_SUFFIXES = (".pth.tar", ".pth", ".pt", ".tar")
# A network that silently drops packets costs a load HUB_TIMEOUT then CONNECT_TIMEOUT, about 5 s (recent huggingface_hub
# releases add up to 3 s of their own, once a process, asking the Hub for their agent registry).
HUB_TIMEOUT = 3.0  # seconds the Hub has to connect and to answer about a file (HF_HUB_ETAG_TIMEOUT overrides it)
CONNECT_TIMEOUT = 2.0  # seconds to connect to the original release's server: Linux resends a lost SYN after 1 s, so one loss still connects
READ_TIMEOUT = 60.0  # seconds a download of the original may go without a byte, so slow links still finish
DEFAULT_DOWNLOAD_TIMEOUT = 3600.0  # seconds a whole download of an original file may take (CUTMIX_ZOO_DOWNLOAD_TIMEOUT)
MAX_CHECKPOINT_BYTES = 4 << 30  # the largest original checkpoint, optimizer state included, is well under 1 GiB
MAX_ZIP_RATIO = 20  # trained weights barely compress (about 1.1 times); a zip bomb expands thousands of times
WAIT_NOTICE_AFTER = 2.0  # seconds a process waits for another's download lock before it says so
logger = logging.getLogger(__name__)
_TRUE = {"1", "on", "yes", "true"}


def cache_dir() -> Path:
    """The zoo's own cache of converted originals: ``CUTMIX_ZOO_CACHE``, else ``~/.cache/cutmix_zoo``."""
    if os.environ.get("CUTMIX_ZOO_CACHE"):
        return Path(os.environ["CUTMIX_ZOO_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "cutmix_zoo"


def is_offline() -> bool:
    """``HF_HUB_OFFLINE`` read at call time, so a running notebook can switch it."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE


def hub_cache_dir() -> str | None:
    """The Hub cache huggingface_hub would use, resolved from the environment at call time."""
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    if os.environ.get("HF_HOME"):
        return os.path.join(os.path.expanduser(os.environ["HF_HOME"]), "hub")
    return None


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


def _etag_timeout() -> float:
    """Seconds to wait for the Hub's answer about a file: ``HF_HUB_ETAG_TIMEOUT`` read at call time (huggingface_hub
    reads it once, at import), else :data:`HUB_TIMEOUT`.

    ``get_hf_file_metadata`` and ``hf_hub_download`` type it as one float, which their HTTP client applies to
    connecting and to each read alike; a connect-only timeout would be an object of that client (requests' tuple
    before huggingface_hub 1.0, httpx's Timeout since), passed where a float is declared. So this one number bounds a
    connection that never completes. huggingface_hub's default, 10 s, made a network that silently drops packets cost
    10 s here before the original release was even tried; 3 s still leaves many round trips for the Hub's short answer.
    """
    try:
        return float(os.environ.get("HF_HUB_ETAG_TIMEOUT", "").strip() or HUB_TIMEOUT)
    except ValueError:
        return HUB_TIMEOUT


def _hub_endpoint() -> str:
    from huggingface_hub import constants

    return (os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")


def _hub_kwargs(entry: Entry, revision: str | None) -> dict[str, Any]:
    return {
        "repo_id": entry.hub_repo,
        "filename": WEIGHTS_NAME,
        "revision": revision,
        "cache_dir": hub_cache_dir(),
        "endpoint": os.environ.get("HF_ENDPOINT") or None,
        "library_name": LIBRARY_NAME,
    }


def original_file(entry: Entry) -> Path:
    """Where the converted original-release weights of ``entry`` are cached."""
    return cache_dir() / entry.name / WEIGHTS_NAME


def cached_file(entry: Entry, revision: str | None = None) -> Path | None:
    """A cached weights file for ``entry`` (Hub cache first, then converted originals), found with no network call."""
    from huggingface_hub import try_to_load_from_cache

    kwargs = _hub_kwargs(entry, revision)
    found = try_to_load_from_cache(kwargs["repo_id"], WEIGHTS_NAME, cache_dir=kwargs["cache_dir"], revision=revision)
    if isinstance(found, str) and os.path.isfile(found):
        config = try_to_load_from_cache(kwargs["repo_id"], CONFIG_NAME, cache_dir=kwargs["cache_dir"], revision=revision)
        if isinstance(config, str) and os.path.isfile(config):
            check_hub_config(entry, Path(config))
        return Path(found)
    if revision is None and original_file(entry).is_file():
        return original_file(entry)
    return None


@contextlib.contextmanager
def _progress_bars(enabled: bool) -> Iterator[None]:
    from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    was_disabled = are_progress_bars_disabled()
    if not enabled:
        disable_progress_bars()
    try:
        yield
    finally:
        if not enabled and not was_disabled:
            enable_progress_bars()


class _HubUnreachable(OSError):
    """The Hub did not answer (no connection, no name, no answer in time); the message says why in a few words."""


def _probe_hub(kwargs: dict[str, Any]) -> None:
    """Ask the Hub about the weights file once, within the etag timeout and with no retry: hf_hub_download retries an
    unreachable Hub (or one answering 5xx) for half a minute and more before it gives up; this fails in the time one
    connection takes. The Hub's own errors (no such repo, file or revision; HTTP 5xx) are raised as they are."""
    from huggingface_hub import get_hf_file_metadata, hf_hub_url
    from huggingface_hub.errors import HfHubHTTPError

    url = hf_hub_url(kwargs["repo_id"], WEIGHTS_NAME, revision=kwargs["revision"], endpoint=kwargs["endpoint"])
    try:
        get_hf_file_metadata(url, timeout=_etag_timeout(), library_name=LIBRARY_NAME)
    except HfHubHTTPError:
        raise
    except Exception as e:  # the HTTP client's own connection errors (requests' or httpx's, by huggingface_hub version)
        raise _HubUnreachable(_network_reason(e)) from e


def _hub_failure(error: BaseException) -> str:
    """What went wrong with the Hub, as a clause after "the Hub (URL)"."""
    response = getattr(error, "response", None)
    status = getattr(response, "status_code", None)
    if isinstance(status, int):
        phrase = getattr(response, "reason_phrase", None) or getattr(response, "reason", None) or ""
        return f"answered HTTP {status} {phrase}".rstrip()
    return f"could not be reached ({error if isinstance(error, _HubUnreachable) else _network_reason(error)})"


def _from_hub(entry: Entry, revision: str | None, progress: bool, force: bool) -> tuple[Path | None, str]:
    """The Hub's file, or None and why it was not taken, as a clause after "the Hub (URL)" (the caller falls back)."""
    from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError

    error: Exception  # what made the Hub's file unavailable, chained to an error raised below
    try:
        with _progress_bars(progress):
            kwargs = _hub_kwargs(entry, revision)
            _probe_hub(kwargs)
            try:  # config.json first: the Hub counts a model's downloads by it, and it must describe this architecture
                config = _hub_download(dict(kwargs, filename=CONFIG_NAME), force)
            except (EntryNotFoundError, HfHubHTTPError, OSError) as e:
                logger.info("%s: no config.json from the Hub repo %s (%s)", entry.name, entry.hub_repo, _reason(e))
                config = None  # none there (weights only), or the Hub is away: the weights' own fetch decides
            if config is not None:
                check_hub_config(entry, config)
            return _hub_download(kwargs, force), ""
    except RevisionNotFoundError as e:
        raise DownloadError(f"The Hub repo {entry.hub_repo} has no revision {revision!r}.") from e
    except RepositoryNotFoundError as e:
        why, error = f"has no repo {entry.hub_repo}", e
    except LocalEntryNotFoundError as e:  # hf_hub_download's "could not reach the Hub"
        why, error = _hub_failure(e), e
    except EntryNotFoundError as e:
        why, error = f"has no {WEIGHTS_NAME} in {entry.hub_repo}", e
    except (HfHubHTTPError, OSError) as e:
        why, error = _hub_failure(e), e
    if revision is not None:
        raise DownloadError(f"Could not fetch {WEIGHTS_NAME} of {entry.hub_repo} at revision {revision!r}: "
                            f"the Hub ({_hub_endpoint()}) {why}.") from error
    return None, why


def _hub_download(kwargs: dict[str, Any], force: bool) -> Path:
    """``hf_hub_download``, with the Hub's own error where ``force_download`` wraps it in a bare ValueError
    ("Force download failed"), so a repo that is not there falls back like any other."""
    from huggingface_hub import hf_hub_download

    try:
        return Path(hf_hub_download(**kwargs, force_download=force, etag_timeout=_etag_timeout()))
    except ValueError as e:
        if force and isinstance(e.__cause__, Exception):
            raise e.__cause__ from None
        raise


def check_hub_config(entry: Entry, path: Path) -> None:
    """Refuse a Hub repo whose config.json describes another network than the entry's, in one sentence.

    The facts a config states are compared (cutmix_zoo's family, arch_args and num_classes, or timm's
    architecture); a config that states none of them leaves the check to the weights' keys and shapes.
    """
    where = f"config.json of the Hub repo {entry.hub_repo}"
    found = _read_json(path)
    if found is None:
        raise WeightsError(f"The {where} is not a JSON object; the repo is not a cutmix_zoo model.")
    from ..builder import resolve_config

    expected = resolve_config(entry.name)
    stated = {"family": expected.family, "arch_args": expected.arch_args, "num_classes": expected.num_classes}
    if "family" not in found and "architecture" in found:
        stated = {"architecture": expected.architecture}
    differ = {key: found[key] for key, value in stated.items() if key in found and found[key] != value}
    if differ:
        shown = ", ".join(f"{k} {v!r}" for k, v in differ.items())
        raise WeightsError(f"The {where} describes {shown}, not {entry.name}'s "
                           f"{', '.join(f'{k} {stated[k]!r}' for k in differ)}; its weights were not loaded.")


def _reason(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0][:300].rstrip(".") if text else type(error).__name__


def _chain(error: BaseException) -> list[BaseException]:
    """``error`` and what it wraps: causes, contexts, urllib3's ``reason`` and exceptions passed as arguments."""
    chain: list[BaseException] = []
    seen: BaseException | None = error
    while seen is not None and seen not in chain and len(chain) < 16:
        chain.append(seen)
        nested = getattr(seen, "reason", None)
        args = [a for a in getattr(seen, "args", ()) if isinstance(a, BaseException)]
        seen = nested if isinstance(nested, BaseException) else seen.__cause__ or seen.__context__ or (args[0] if args else None)
    return chain


def _is_timeout(error: BaseException) -> bool:
    return any(isinstance(e, (TimeoutError, socket.timeout)) or "timeout" in type(e).__name__.lower() for e in _chain(error))


def _network_reason(error: BaseException) -> str:
    """Why a connection failed, in a few words, whichever client (requests, urllib3, httpx) wrapped the socket's error."""
    chain = _chain(error)
    text = " ".join(str(e) for e in chain).lower()
    if any(isinstance(e, socket.gaierror) for e in chain) or any(
            s in text for s in ("name or service not known", "nodename nor servname", "getaddrinfo failed", "failed to resolve")):
        return "its host name could not be resolved"
    if any(isinstance(e, ConnectionRefusedError) for e in chain) or "connection refused" in text:
        return "the connection was refused"
    if _is_timeout(error) or "timed out" in text:
        return "no answer in time"
    if any(isinstance(e, ConnectionResetError) for e in chain) or "connection reset" in text:
        return "the connection was reset"
    return _reason(chain[-1])


def _bytes(n: int) -> str:
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n:,} bytes"


def _remedy(name: str) -> str:
    return (f"check the network, or run `cutmix-zoo download {name}` on a connected machine and copy its caches here to load "
            "them with HF_HUB_OFFLINE=1, or pass weights=FILE, or set CUTMIX_ZOO_ORIGINAL_URL to a mirror of the original files")


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
        record = _read_json(cache_dir() / entry.name / SOURCE_NAME)
        return record.get("converted_sha256") if record else None
    if len(real.name) == 64 and all(c in "0123456789abcdef" for c in real.name):
        return real.name  # the Hub's LFS blobs are named by their sha256
    marker = _read_json(_marker(entry))  # a plain blob: what its first use recorded
    return marker.get("sha256") if marker and marker.get("file") == str(real) else None


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return None  # absent or torn: treated as no record
    return value if isinstance(value, dict) else None


def trusted(entry: Entry, path: Path, full: bool = False) -> Path:
    """``path`` after checking that it is the file that was written: cheap when it has not changed since it was last
    verified (its inode, size and mtime match the marker), a sha256 against the recorded one otherwise (or with ``full``).

    A flipped bit written through the file system, or another file put in its place, is one sentence, never a silent
    load of wrong weights; bit rot that keeps the file's stamp is what ``cutmix-zoo verify`` (and ``download``) catch.
    """
    real = path.resolve()
    marker = _read_json(_marker(entry))
    if not full and marker and marker.get("file") == str(real) and marker.get("stamp") == _stamp(real):
        return path
    digest = sha256_file(real)
    expected = recorded_sha256(entry, path)
    if expected is not None and digest != expected:
        raise WeightsError(
            f"The cached weights of {entry.name} ({path}) are not the file that was written (sha256 {digest[:12]}..., "
            f"recorded {expected[:12]}...): they were changed or corrupted; run `cutmix-zoo download --force {entry.name}`.")
    with contextlib.suppress(OSError):  # a read-only cache still loads; it is hashed again next time
        write_text_atomic(_marker(entry), json.dumps({"file": str(real), "stamp": _stamp(real), "sha256": digest}) + "\n")
    return path


def fetch_weights(entry: Entry, revision: str | None = None, progress: bool = True, force: bool = False,
                  verify: bool = False) -> Path:
    """A local safetensors file with ``entry``'s weights, downloading and converting only what is not cached.

    A cached file is checked before it is returned (see :func:`trusted`; ``verify=True`` re-hashes it in full).
    """
    if entry.bundled_file is not None:
        logger.info("%s: the weights bundled with cutmix_zoo (%s)", entry.name, entry.bundled_file)
        return trusted(entry, entry.bundled_file, full=verify)
    if not force:
        found = cached_file(entry, revision)
        if found is not None:
            logger.info("%s: cached at %s", entry.name, found)
            return trusted(entry, found, full=verify)
    if is_offline():
        raise DownloadError(
            f"{entry.name} is not cached and HF_HUB_OFFLINE is set, so {WEIGHTS_NAME} of {entry.hub_repo} cannot be "
            f"fetched: run `cutmix-zoo download {entry.name}` on a machine with network and copy the caches over."
        )
    found, skipped = _from_hub(entry, revision, progress, force)
    if found is not None:
        logger.info("%s: downloaded from the Hub repo %s", entry.name, entry.hub_repo)
    else:
        logger.info("%s: not taken from the Hub (it %s); trying the original release", entry.name, skipped)
        if entry.original_url is None:
            raise DownloadError(f"Could not fetch {entry.name}: the Hub ({_hub_endpoint()}) {skipped}, "
                                "and it has no original release file.")
        try:
            found = fetch_original(entry, progress=progress, force=force)
        except _TransferError as e:  # both sources failed: name both, and what to do
            raise DownloadError(f"Could not fetch {entry.name}: the Hub ({_hub_endpoint()}) {skipped}, and the original "
                                f"release ({e.url}) {e.clause}; {_remedy(entry.name)}.") from e
        logger.info("%s: converted from the original release %s", entry.name, entry.original_url)
    return trusted(entry, found, full=True)  # records what was just written


class _TransferError(DownloadError):
    """The original release's server did not deliver the file; ``clause`` says how, as a clause after its URL."""

    def __init__(self, url: str, clause: str) -> None:
        super().__init__(f"The original release file {url} {clause}.")
        self.url, self.clause = url, clause


@contextlib.contextmanager
def _locked(entry: Entry, wait: float, progress: bool) -> Iterator[Path]:
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
    transfer raises a :class:`_TransferError` that says how many bytes had arrived."""
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
                raise _TransferError(url, f"answered HTTP {response.status_code} {response.reason or ''}".rstrip())
            expected = int(response.headers.get("Content-Length") or 0) or None
            with open(dest, "wb") as f, tqdm(total=expected, unit="B", unit_scale=True, desc=desc, disable=not progress) as bar:
                for block in _blocks(response):
                    f.write(block)
                    digest.update(block)
                    arrived = wire_bytes() if response.headers.get("Content-Encoding") else arrived + len(block)
                    bar.update(arrived - bar.n)
                    if time.monotonic() > deadline:
                        raise _TransferError(url, f"did not arrive within {timeout:g} s (CUTMIX_ZOO_DOWNLOAD_TIMEOUT): only "
                                                  f"{so_far()} came")
            arrived = wire_bytes()
    except DownloadError:
        raise
    except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as e:
        arrived = wire_bytes()
        if response is None:
            raise _TransferError(url, f"could not be reached ({_network_reason(e)})") from e
        if _is_timeout(e):
            raise _TransferError(url, f"sent {so_far()} and then nothing for {between:g} s") from e
        raise _TransferError(url, f"broke off after {so_far()} ({_network_reason(e)})") from e
    if expected is not None and arrived != expected:
        raise _TransferError(url, f"was cut short: {arrived:,} of {expected:,} bytes arrived")
    return digest.hexdigest()


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
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError) as e:
        raise DownloadError(f"The folder zip from {url} is damaged ({_reason(e)}).") from e
    except (RuntimeError, NotImplementedError) as e:  # an encrypted member, or a compression zipfile cannot read
        raise DownloadError(f"The folder zip from {url} cannot be unpacked here ({_reason(e)}).") from e


def fetch_original(entry: Entry, progress: bool = True, force: bool = False) -> Path:
    """Download the original release file of ``entry`` once, verify it, convert it and cache the safetensors."""
    url = cast(str, entry.original_url)  # fetch_weights calls this only for entries with an original file
    timeout = download_timeout()
    with _locked(entry, 2 * timeout, progress) as folder:  # the holder's own download is bounded by ``timeout``
        target = folder / WEIGHTS_NAME
        if target.is_file() and not force:
            logger.info("%s: converted by another process meanwhile (%s)", entry.name, target)
            return target
        try:
            digest, meta = _download_and_convert(entry, url, folder, target, progress, timeout)
        except BaseException:
            if not any(folder.iterdir()):
                folder.rmdir()
            raise
        record = {"name": entry.name, "url": url, "sha256": digest, "layout": meta.get("layout"),
                  "converted_sha256": sha256_file(target), "downloaded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                  **{k: meta[k] for k in ("epoch", "best_err1", "best_err5") if k in meta}}
        write_text_atomic(folder / SOURCE_NAME, json.dumps(record, indent=2) + "\n")
        return target


def _download_and_convert(entry: Entry, url: str, folder: Path, target: Path, progress: bool, timeout: float) -> tuple[str, dict]:
    """Download into a temporary folder inside ``folder``, verify, unpack and convert into ``target``."""
    from ..files import not_a_checkpoint

    with tempfile.TemporaryDirectory(prefix=".download-", dir=folder) as tmp:
        raw = Path(tmp) / "download"
        digest = _download(url, raw, progress, entry.name, timeout)
        kind = not_a_checkpoint(raw)
        if kind is not None:
            removed = " (what a file host serves for a removed or rate-limited link)" if "HTML" in kind else ""
            wanted = "the folder zip" if entry.packaging == "folder_zip" else "the checkpoint"
            raise _TransferError(url, f"sent {kind}{removed}, not {wanted}")
        if entry.sha256 is not None and digest != entry.sha256:
            raise DownloadError(f"The file downloaded from {url} has sha256 {digest}, not the registry's {entry.sha256}; it was deleted.")
        checkpoint, label = raw, url
        if entry.packaging == "folder_zip":
            if not zipfile.is_zipfile(raw):
                raise DownloadError(f"The file downloaded from {url} is not the folder zip a Dropbox shared folder gives.")
            checkpoint = Path(tmp) / "checkpoint.pth.tar"
            label = f"{_checkpoint_in_zip(raw, checkpoint, url)} in the folder zip from {url}"
        from .convert import load_original

        state, meta = load_original(checkpoint, label=label)
        write_converted(entry, state, target, source_url=url, source_sha256=digest, label=label)
    return digest, meta


def write_converted(entry: Entry, state: dict, out: Path, source_url: str | None, source_sha256: str | None,
                    label: str | None = None) -> Path:
    """Check ``state`` against the entry's architecture and write it as safetensors with provenance metadata."""
    from ..builder import expected_state, resolve_config
    from ..fastload import check_finite, check_state_dict
    from .convert import save_safetensors

    expected = expected_state(resolve_config(entry.name))
    check_state_dict(state, expected, f"{entry.name} ({entry.arch})", label or source_url or "the checkpoint")
    check_finite(state, label or source_url or "the checkpoint")
    metadata = {"format": "pt", "name": entry.name, "source_url": source_url or "", "source_sha256": source_sha256 or ""}
    return save_safetensors(state, out, metadata)


def cache_status(entry: Entry) -> dict[str, Any]:
    """What is cached for ``entry``: the file that would load, and the recorded original sha256."""
    found = entry.bundled_file or cached_file(entry)
    status: dict[str, Any] = {"cached_file": str(found) if found else None}
    record = cache_dir() / entry.name / SOURCE_NAME
    if record.is_file():
        data = json.loads(record.read_text())
        status["downloaded_sha256"] = data.get("sha256")
    return status

