"""Fetching what a :class:`~.source.Source` names: a model's weights file from the caches, the Hugging Face Hub, else
the original release.

Order for ``load(name)``: a file already cached (the Hub's cache, then the zoo's converted originals) with no network
call (:func:`.source.entry_source` finds it); then ``model.safetensors`` from the entry's Hub repo through
``hf_hub_download`` (:mod:`.huggingface`); then, where the Hub has no such repo or file, the original Dropbox URL,
downloaded once, checked, converted to safetensors and cached (:mod:`.original`). Files only ever enter a cache whole,
under a file lock so that concurrent processes download once (:mod:`.cache`).

Every failure is bounded in time and one sentence: the Hub is asked once, without huggingface_hub's retries, before
anything is downloaded from it; a connection that never completes gives up within seconds
(:data:`.network.HUB_CONNECT_TIMEOUT`, :data:`.original.CONNECT_TIMEOUT`), while a Hub that connects and is slow to
answer gets huggingface_hub's ten (:data:`.network.HUB_READ_TIMEOUT`); a download of the original has an overall
deadline (``CUTMIX_ZOO_DOWNLOAD_TIMEOUT``); a zip is unpacked only as far as a checkpoint can be large. Where both
sources fail, one sentence names both and what to do. Which source a model came from, and why one was skipped, is
logged (``logging.getLogger("cutmix_zoo.hub")``; the CLI shows it with ``-v``).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import cast

import torch

from ..errors import DownloadError
from ..fastload import check_finite, nonfinite_in_safetensors, refuse_nonfinite
from ..files import WEIGHTS_NAME
from ..model_config import ModelConfig
from ..registry import Entry
from .cache import is_offline, trusted
from .convert import read_state_dict
from .huggingface import check_hub_config, from_hub
from .original import TransferError, fetch_original
from .repo import hub_endpoint
from .source import Source, entry_source

logger = logging.getLogger(__name__)


def read_weights(source: Source, device: torch.device | str | None = None,
                 progress: bool = True) -> tuple[dict[str, torch.Tensor], str]:
    """The tensors of the file ``source`` names, fetched first where it is not local, and that file's name (for errors
    and ``pretrained_cfg["source"]``, as the caller wrote it for a given file or folder)."""
    if source.kind not in ("file", "folder"):
        where = fetch_file(source, progress=progress)  # a cached file was checked, finite values included, when it was hashed
        return read_state_dict(where, device), str(where)
    given = cast("str | os.PathLike", source.file)
    state = read_state_dict(given, device)
    stamp = _stamp(given)
    if stamp not in _FINITE:
        outcome = "so they were not loaded"
        if stamp[0].endswith(".safetensors"):
            refuse_nonfinite(nonfinite_in_safetensors(stamp[0]), str(given), outcome)  # the file's bytes, not its memory map
        else:
            check_finite(state, str(given), outcome)
        _FINITE.add(stamp)
    return state, str(given)


_FINITE: set[tuple[str, int, int, int]] = set()  # the stamps of given files this process found finite


def _stamp(path: str | os.PathLike) -> tuple[str, int, int, int]:
    """A given file (a folder: its weights) as it is now: its real path, inode, size and modification time; a rewritten
    file gets another stamp, so it is checked again."""
    real = Path(os.path.realpath(path))
    real = real / WEIGHTS_NAME if real.is_dir() else real
    st = real.stat()
    return str(real), st.st_ino, st.st_size, st.st_mtime_ns


def fetch_weights(entry: Entry, revision: str | None = None, progress: bool = True, force: bool = False,
                  verify: bool = False) -> Path:
    """A local safetensors file with ``entry``'s weights, downloading and converting only what is not cached
    (``force``: downloading again); the weights are checked against the entry's own config."""
    return fetch_file(entry_source(entry, ModelConfig.from_entry(entry), revision, force), progress=progress, verify=verify)


def fetch_file(source: Source, progress: bool = True, verify: bool = False) -> Path:
    """The local safetensors file of a registry entry's ``source`` (bundled, cached or to download), checked first.

    A cached file is checked before it is returned (see :func:`.cache.trusted`; ``verify=True`` re-hashes it in full),
    and its cached config.json against ``source.cfg``. A file or folder source is read as it is (:func:`read_weights`),
    and the meta and random sources name no file: asking for one is a programming error (ValueError).
    """
    entry = source.entry
    if entry is None or source.kind not in ("bundled", "hub_cache", "original_cache", "hub"):
        raise ValueError(f"A {source.kind!r} source names no registry file to fetch.")
    if source.kind == "bundled":
        logger.info("%s: the weights bundled with cutmix_zoo (%s)", entry.name, source.file)
        return trusted(entry, Path(cast("str | os.PathLike", source.file)), full=verify)
    if source.kind != "hub":
        if source.config is not None:
            check_hub_config(entry, source.config, source.cfg)
        logger.info("%s: cached at %s", entry.name, source.file)
        return trusted(entry, Path(cast("str | os.PathLike", source.file)), full=verify)
    return trusted(entry, _download(entry, source, progress), full=True)  # records what was just written


def _download(entry: Entry, source: Source, progress: bool) -> Path:
    """The entry's file from the Hub, else from the original release; offline, or where both fail, one sentence."""
    if source.hub.offline():
        why = "HF_HUB_OFFLINE is set" if is_offline() else "local_files_only=True"
        raise DownloadError(
            f"{entry.name} is not cached and {why}, so {WEIGHTS_NAME} of {entry.hub_repo} cannot be "
            f"fetched: run `cutmix-zoo download {entry.name}` on a machine with network and copy the caches over."
        )
    found, skipped = from_hub(entry, source.cfg, source.revision, progress, source.force, source.hub)
    if found is not None:
        logger.info("%s: downloaded from the Hub repo %s", entry.name, entry.hub_repo)
        return found
    logger.info("%s: not taken from the Hub (it %s); trying the original release", entry.name, skipped)
    if entry.original_url is None:
        raise DownloadError(f"Could not fetch {entry.name}: the Hub ({hub_endpoint()}) {skipped}, "
                            "and it has no original release file.")
    try:
        found = fetch_original(entry, source.cfg, progress=progress, force=source.force)
    except TransferError as e:  # both sources failed: name both, and what to do
        raise DownloadError(f"Could not fetch {entry.name}: the Hub ({hub_endpoint()}) {skipped}, and the original "
                            f"release ({e.url}) {e.clause}; {_remedy(entry.name)}.") from e
    logger.info("%s: converted from the original release %s", entry.name, entry.original_url)
    return found


def _remedy(name: str) -> str:
    return (f"check the network, or run `cutmix-zoo download {name}` on a connected machine and copy its caches here to load "
            "them with HF_HUB_OFFLINE=1, or pass weights=FILE, or set CUTMIX_ZOO_ORIGINAL_URL to a mirror of the original files")
