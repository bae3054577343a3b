"""WebDataset tar shards: the index a shard folder carries, shard lists from brace patterns, and reading one shard.

A shard folder (what ``cutmix-zoo shard`` writes, :mod:`.shard_writer`) holds ``train-000000.tar ...`` and
``val-000000.tar ...``, each sample a key, its image's bytes as they were (``jpg``, ``png``, ...) and its class index
(``cls``), and ``dataset.json``: the classes, and each shard's name, sample count and sha256. ``--data`` may also be a
brace pattern (``train-{000000..000099}.tar``) of local paths, ``http(s)://`` URLs or ``pipe:`` commands, which the
``webdataset`` library streams (curl for URLs, the command's stdout for ``pipe:``) without copying a shard to disk.
A pattern's sample counts come from a ``dataset.json`` beside its shards where there is one, else from reading each
shard once before training.

Every failure of a shard (missing, unreachable, not a tar, cut short) is a :class:`~.dataspec.DataError` in one
sentence naming the shard.
"""

from __future__ import annotations

import json
import os
import re
import tarfile
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

from ..errors import InvalidArgumentError
from ..files import sha256_file
from .dataspec import DataError

INDEX_NAME = "dataset.json"
INDEX_FORMAT = "cutmix-zoo webdataset shards"
# The sample fields that are not the image: the class and webdataset's own bookkeeping.
_NOT_IMAGE = ("cls", "__key__", "__url__", "__local_path__")


@dataclass(frozen=True)
class Shard:
    """One shard: where it is (a path, a URL or a ``pipe:`` command), how many samples it holds, its sha256 if known,
    its samples' classes if known (the index lists them; ``--val-split`` needs them), and ``members``: the positions in
    the shard of the samples read from it (None: all; a ``--val-split`` train or validation share: some)."""

    url: str
    count: int
    sha256: str | None = None
    labels: tuple[int, ...] | None = None
    members: frozenset[int] | None = None


# Reads one shard: its (key, image bytes, class) samples in order, or a DataError naming it.
ShardReader = Callable[[str], Generator[tuple[str, bytes, int], None, None]]


@dataclass(frozen=True)
class Source:
    """A streamed dataset: its training and validation shards, its class names, and the function that reads a shard."""

    train: list[Shard]
    val: list[Shard]
    classes: list[str]
    read: ShardReader


def webdataset() -> Any:
    """The ``webdataset`` module, or a one-sentence error saying how to install it."""
    try:
        import webdataset as wds
    except ImportError:
        raise InvalidArgumentError("Reading or writing tar shards needs the webdataset library: pip install 'cutmix-zoo[scale]'.") from None
    return wds


def is_pattern(data: str) -> bool:
    """Whether ``--data`` names tar shards directly: a brace pattern, a URL or a ``pipe:`` command, or a ``.tar`` path."""
    return data.startswith(("http://", "https://", "pipe:")) or ("{" in data and ".." in data) or data.endswith(".tar")


def expand(pattern: str) -> list[str]:
    """The shard names of a brace pattern (``a-{000..009}.tar``, ``{a,b}``), in order (webdataset's own expansion)."""
    from braceexpand import braceexpand  # a dependency of webdataset

    webdataset()
    return list(braceexpand(pattern))


def read_index(folder: str) -> dict[str, Any]:
    """A shard folder's ``dataset.json``, or a DataError in one sentence when it is missing or not an index."""
    path = os.path.join(folder, INDEX_NAME)
    try:
        with open(path) as f:
            index = json.load(f)
    except FileNotFoundError:
        raise DataError(f"{folder} holds no {INDEX_NAME}: it is not a finished shard folder (rerun cutmix-zoo shard to finish it).") from None
    except (OSError, ValueError) as e:
        raise DataError(f"{path} cannot be read as a shard index ({e}).") from None
    if not isinstance(index, dict) or index.get("format") != INDEX_FORMAT:
        raise DataError(f"{path} is not a shard index written by cutmix-zoo shard.")
    return index


def index_shards(folder: str, index: dict[str, Any], split: str) -> list[Shard]:
    """The shards of ``split`` in a local shard folder, after checking each against the index's sha256, so that a
    changed, missing or cut-short shard is refused in one sentence before training rather than found mid-epoch (the
    files are hashed in a thread per CPU: hashlib leaves the GIL)."""
    from concurrent.futures import ThreadPoolExecutor

    entries = index["splits"].get(split, {}).get("shards", [])
    paths = [os.path.join(folder, entry["name"]) for entry in entries]
    for path in paths:
        if not os.path.isfile(path):
            raise DataError(f"The shard {path}, listed in {os.path.join(folder, INDEX_NAME)}, is missing.")
    if os.environ.get("LOCAL_RANK", "0") != "0":  # one rank per node hashes; its refusal ends the others (torchrun)
        return [Shard(path, int(entry["count"]), entry["sha256"], _labels(entry)) for entry, path in zip(entries, paths)]
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        digests = list(pool.map(sha256_file, paths))
    shards = []
    for entry, path, digest in zip(entries, paths, digests):
        if digest != entry["sha256"]:
            raise DataError(f"The shard {path} does not match the sha256 in {os.path.join(folder, INDEX_NAME)}: it changed since "
                            "it was written; rewrite the folder with cutmix-zoo shard.")
        shards.append(Shard(path, int(entry["count"]), entry["sha256"], _labels(entry)))
    return shards


def pattern_shards(pattern: str) -> tuple[list[Shard], list[str] | None]:
    """The shards of a brace pattern with their sample counts, and the classes if an index was found beside them.

    The counts come from ``dataset.json`` in the shards' folder (a local one, or the same URL folder) where it lists
    them; otherwise each shard is read once now (only its tar headers matter, but a remote shard is fetched whole)."""
    urls = expand(pattern)
    index = _index_beside(urls[0])
    listed: dict[str, dict[str, Any]] = {}
    if index is not None:
        listed = {entry["name"]: entry for split in index["splits"].values() for entry in split["shards"]}
    shards = [Shard(url, int(listed[_name(url)]["count"]), labels=_labels(listed[_name(url)])) if _name(url) in listed
              else count_samples(url) for url in urls]
    return shards, (index["classes"] if index is not None else None)


def _name(url: str) -> str:
    """A shard's file name: the last path part of a path or URL, or of the first word after it in a ``pipe:`` command."""
    return url.removeprefix("pipe:").split(".tar")[0].rsplit("/", 1)[-1].split()[-1] + ".tar"


def _labels(entry: dict[str, Any]) -> tuple[int, ...] | None:
    return tuple(entry["labels"]) if "labels" in entry else None


def _index_beside(url: str) -> dict[str, Any] | None:
    """The ``dataset.json`` in the folder of a shard, None where there is none: a local file, the same URL folder, or for
    ``pipe:CMD`` the output of CMD with the shard's name replaced by ``dataset.json`` (``aws s3 cp s3://b/dataset.json -``)."""
    if url.startswith("pipe:"):
        import subprocess

        try:  # the user's own command, run by the shell as webdataset runs it for the shards
            done = subprocess.run(url[5:].replace(_name(url), INDEX_NAME), shell=True, capture_output=True, timeout=300)
            index = json.loads(done.stdout) if done.returncode == 0 else None
        except (OSError, subprocess.TimeoutExpired, ValueError):
            return None
    elif url.startswith(("http://", "https://")):
        import requests

        try:
            reply = requests.get(url.rsplit("/", 1)[0] + "/" + INDEX_NAME, timeout=30)
            index = reply.json() if reply.ok else None
        except (requests.RequestException, ValueError):
            return None
    else:
        try:
            with open(os.path.join(os.path.dirname(url), INDEX_NAME)) as f:
                index = json.load(f)
        except (OSError, ValueError):
            return None
    return index if isinstance(index, dict) and index.get("format") == INDEX_FORMAT else None


def count_samples(url: str) -> Shard:
    """One shard with its sample count and classes, by reading it through (a DataError naming it if it cannot be read)."""
    labels = tuple(label for _, _, label in tar_samples(url, decode=False))
    return Shard(url, len(labels), labels=labels)


def shard_failure(url: str, error: BaseException, started: bool = False) -> DataError:
    """The one-sentence error of a shard that cannot be read, from what the tar reader or the opener raised (``started``:
    after some of its samples were read, where any tar error means the shard was cut short)."""
    text = str(error.args[0]).split(" @ ")[0] if isinstance(error, tarfile.ReadError) and error.args else ""  # webdataset adds " @ stream"
    status = re.search(r"\): exit (\d+)", str(error.args[0])) if error.args else None  # webdataset's Pipe: the reader's exit status
    if isinstance(error, FileNotFoundError):
        reason = "is missing"
    elif status:
        reason = f"is unreachable (the command reading it, curl for a URL, exited with status {status.group(1)})"
    elif text == "empty file":
        reason = "is empty or unreachable (nothing came from it)"
    elif text in ("unexpected end of data", "empty header") or (started and isinstance(error, tarfile.ReadError)):
        reason = "is cut short (truncated)"
    elif isinstance(error, tarfile.ReadError):
        reason = f"is not a tar file ({text or 'unreadable header'})"
    else:
        reason = f"cannot be read ({(str(error).strip() or type(error).__name__).splitlines()[0]})"
    return DataError(f"The shard {url} {reason}.")


def tar_samples(url: str, decode: bool = True) -> Generator[tuple[str, bytes, int], None, None]:
    """The ``(key, image bytes, class)`` samples of one tar shard in its order, read by webdataset; ``decode=False``
    leaves the bytes empty (to count them). A shard that fails is a DataError naming it."""
    wds = webdataset()
    samples = wds.WebDataset(url, shardshuffle=False, nodesplitter=None, workersplitter=None, empty_check=False)
    started = False
    try:
        for sample in samples:
            data = image_bytes(url, sample)
            started = True
            yield sample["__key__"], data if decode else b"", int(sample["cls"])
    except (OSError, tarfile.TarError, ValueError) as e:
        if isinstance(e, DataError):
            raise
        raise shard_failure(url, e, started) from None


def image_bytes(url: str, sample: dict[str, Any]) -> bytes:
    """The image field of a shard's sample (``jpg``, ``png``, ...), a DataError naming the shard and key if it has none
    or no class."""
    images = [k for k in sample if k not in _NOT_IMAGE]
    if not images or "cls" not in sample:
        raise DataError(f"The sample {sample['__key__']} of the shard {url} has no {'image' if not images else 'cls'} field.")
    return bytes(sample[images[0]])
