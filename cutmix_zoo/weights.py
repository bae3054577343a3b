"""Where a model's weights file comes from: the Hugging Face Hub, else the original release.

Order for ``load(name)``: a file already cached (the Hub's cache, then the zoo's converted
originals) with no network call; then ``model.safetensors`` from the entry's Hub repo through
``hf_hub_download``; then, where the Hub has no such repo or file, the original Dropbox URL,
downloaded once, checked, converted to safetensors and cached. Files only ever enter a cache
whole: downloads go to a temporary file beside their destination and are renamed into place, under
a file lock so that concurrent processes download once.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any, Iterator

from .errors import DownloadError, WeightsError
from .files import CONFIG_NAME, WEIGHTS_NAME, sha256_file, write_text_atomic
from .registry import LIBRARY_NAME, Entry

SOURCE_NAME = "source.json"
CHECKPOINT_SUFFIXES = (".pth.tar", ".pth", ".pt", ".tar")
TIMEOUT = (10, 60)  # seconds to connect, seconds between bytes
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


def _from_hub(entry: Entry, revision: str | None, progress: bool, force: bool) -> Path | None:
    """The Hub's file, or None where the repo or the file does not exist (the caller falls back)."""
    from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError

    try:
        with _progress_bars(progress):
            kwargs = _hub_kwargs(entry, revision)
            try:  # config.json first: the Hub counts a model's downloads by it, and it must describe this architecture
                config = _hub_download(dict(kwargs, filename=CONFIG_NAME), force)
            except (EntryNotFoundError, HfHubHTTPError, OSError):
                config = None  # none there (weights only), or the Hub is away: the weights' own fetch decides
            if config is not None:
                check_hub_config(entry, config)
            return _hub_download(kwargs, force)
    except LocalEntryNotFoundError as e:  # the Hub could not be reached
        if revision is not None:
            raise DownloadError(f"Could not reach the Hub for {entry.hub_repo} at revision {revision!r}: {_reason(e)}.") from None
        return None
    except RevisionNotFoundError:
        raise DownloadError(f"The Hub repo {entry.hub_repo} has no revision {revision!r}.") from None
    except (RepositoryNotFoundError, EntryNotFoundError):
        if revision is not None:
            raise DownloadError(f"The Hub repo {entry.hub_repo} has no {WEIGHTS_NAME} at revision {revision!r}.") from None
        return None
    except (HfHubHTTPError, OSError) as e:
        if revision is not None:
            raise DownloadError(f"Could not download {WEIGHTS_NAME} of {entry.hub_repo} from the Hub: {_reason(e)}.") from None
        return None


def _hub_download(kwargs: dict[str, Any], force: bool) -> Path:
    """``hf_hub_download``, with the Hub's own error where ``force_download`` wraps it in a bare ValueError
    ("Force download failed"), so a repo that is not there falls back like any other."""
    from huggingface_hub import hf_hub_download

    try:
        return Path(hf_hub_download(**kwargs, force_download=force))
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
    from .builder import resolve_config

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
        return trusted(entry, entry.bundled_file, full=verify)
    if not force:
        found = cached_file(entry, revision)
        if found is not None:
            return trusted(entry, found, full=verify)
    if is_offline():
        raise DownloadError(
            f"{entry.name} is not cached and HF_HUB_OFFLINE is set, so {WEIGHTS_NAME} of {entry.hub_repo} cannot be "
            f"fetched: run `cutmix-zoo download {entry.name}` on a machine with network and copy the caches over."
        )
    found = _from_hub(entry, revision, progress, force)
    if found is None:
        if entry.original_url is None:
            raise DownloadError(f"{entry.name} is not on the Hub ({entry.hub_repo}) and has no original release file.")
        found = fetch_original(entry, progress=progress, force=force)
    return trusted(entry, found, full=True)  # records what was just written


@contextlib.contextmanager
def _locked(entry: Entry) -> Iterator[Path]:
    """The entry's cache folder, held under an inter-process file lock."""
    from filelock import FileLock

    folder = cache_dir() / entry.name
    folder.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder) + ".lock"):
        yield folder


def _download(url: str, dest: Path, progress: bool, desc: str) -> str:
    """Stream ``url`` into ``dest``, returning its sha256; a short or failed transfer raises and leaves nothing."""
    import hashlib

    import requests
    from tqdm.auto import tqdm

    digest = hashlib.sha256()
    received = 0
    try:
        with requests.get(url, stream=True, timeout=TIMEOUT, allow_redirects=True) as response:
            if response.status_code != 200:
                raise DownloadError(f"Downloading {url} failed with HTTP {response.status_code} {response.reason}.")
            expected = int(response.headers.get("Content-Length") or 0) or None
            with open(dest, "wb") as f, tqdm(total=expected, unit="B", unit_scale=True, desc=desc, disable=not progress) as bar:
                for block in response.iter_content(1 << 20):
                    f.write(block)
                    digest.update(block)
                    received += len(block)
                    bar.update(len(block))
    except requests.RequestException as e:
        raise DownloadError(f"Downloading {url} failed after {received} bytes: {_reason(e)}.") from None
    if expected is not None and received != expected:
        raise DownloadError(f"Downloading {url} was cut short: {received} of {expected} bytes arrived.")
    return digest.hexdigest()


def _checkpoint_in_zip(archive: Path, dest: Path, url: str) -> None:
    """Extract the checkpoint of a Dropbox folder zip (``model_best.pth.tar`` preferred) to ``dest``."""
    with zipfile.ZipFile(archive) as zf:
        members = [m for m in zf.infolist() if not m.is_dir() and m.filename.lower().endswith(CHECKPOINT_SUFFIXES)]
        if not members:
            names = ", ".join(zf.namelist()[:5]) or "nothing"
            raise DownloadError(f"The folder zip from {url} holds no checkpoint (.pth or .pth.tar), only: {names}.")
        best = [m for m in members if os.path.basename(m.filename) == "model_best.pth.tar"]
        member = (best or sorted(members, key=lambda m: m.file_size, reverse=True))[0]
        with zf.open(member) as src, open(dest, "wb") as out:
            shutil.copyfileobj(src, out, 1 << 20)


def fetch_original(entry: Entry, progress: bool = True, force: bool = False) -> Path:
    """Download the original release file of ``entry`` once, verify it, convert it and cache the safetensors."""
    url = entry.original_url
    with _locked(entry) as folder:
        target = folder / WEIGHTS_NAME
        if target.is_file() and not force:
            return target
        try:
            digest, meta = _download_and_convert(entry, url, folder, target, progress)
        except BaseException:
            if not any(folder.iterdir()):
                folder.rmdir()
            raise
        record = {"name": entry.name, "url": url, "sha256": digest, "layout": meta.get("layout"),
                  "converted_sha256": sha256_file(target), "downloaded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                  **{k: meta[k] for k in ("epoch", "best_err1", "best_err5") if k in meta}}
        write_text_atomic(folder / SOURCE_NAME, json.dumps(record, indent=2) + "\n")
        return target


def _download_and_convert(entry: Entry, url: str, folder: Path, target: Path, progress: bool) -> tuple[str, dict]:
    """Download into a temporary folder inside ``folder``, verify, unpack and convert into ``target``."""
    with tempfile.TemporaryDirectory(prefix=".download-", dir=folder) as tmp:
        raw = Path(tmp) / "download"
        digest = _download(url, raw, progress, entry.name)
        if entry.sha256 is not None and digest != entry.sha256:
            raise DownloadError(f"The file downloaded from {url} has sha256 {digest}, not the registry's {entry.sha256}; it was deleted.")
        checkpoint = raw
        if entry.packaging == "folder_zip":
            if not zipfile.is_zipfile(raw):
                raise DownloadError(f"The file downloaded from {url} is not the folder zip a Dropbox shared folder gives.")
            checkpoint = Path(tmp) / "checkpoint.pth.tar"
            _checkpoint_in_zip(raw, checkpoint, url)
        from .convert import load_original

        state, meta = load_original(checkpoint)
        write_converted(entry, state, target, source_url=url, source_sha256=digest)
    return digest, meta


def write_converted(entry: Entry, state: dict, out: Path, source_url: str | None, source_sha256: str | None,
                    label: str | None = None) -> Path:
    """Check ``state`` against the entry's architecture and write it as safetensors with provenance metadata."""
    from .builder import expected_state, resolve_config
    from .convert import check_state_dict, save_safetensors

    expected = expected_state(resolve_config(entry.name))
    check_state_dict(state, expected, f"{entry.name} ({entry.arch})", label or source_url or "the checkpoint")
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

