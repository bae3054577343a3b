"""Loading by Hub repo id, as ``from_pretrained("org/repo")`` does: what counts as a repo id, the download options
users pass to ``hf_hub_download``, and a user's repo (an export ``cutmix-zoo publish`` made) fetched as a folder.

``load("org/repo")``: a string with one ``/`` that names no existing path is a repo id. The registry's own repo
(``cutmix-zoo/resnet50.cutmix_in1k``) is its registry entry, with the entry's fallback to the original release; any
other repo is read as an exported folder is, its ``config.json`` deciding the network, after ``hf_hub_download``
brings its files. :class:`HubOptions` carries ``cache_dir``, ``force_download``, ``local_files_only`` and ``token``
to every Hub download of a load, with ``hf_hub_download``'s meaning.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import DownloadError, UnknownModelError
from ..files import CONFIG_NAME, WEIGHTS_NAME
from ..registry import LIBRARY_NAME, get_entry, is_registry_name
from .cache import hub_cache_dir, is_offline
from .network import HubUnreachable, hub_timeout, probe_hub_file, short_reason

_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass(frozen=True)
class HubOptions:
    """``hf_hub_download``'s options for a load: where the Hub cache is (None: huggingface_hub's, from the environment
    at call time), whether to download again what is cached, whether to use the cache only (as ``HF_HUB_OFFLINE=1``),
    and the token (None: the saved one or ``HF_TOKEN``; False: none)."""

    cache_dir: str | os.PathLike | None = None
    force_download: bool = False
    local_files_only: bool = False
    token: str | bool | None = None

    def cache(self) -> str | None:
        """The Hub cache folder these downloads use."""
        return os.fspath(self.cache_dir) if self.cache_dir is not None else hub_cache_dir()

    def offline(self) -> bool:
        """Whether the Hub may not be asked: ``local_files_only``, or ``HF_HUB_OFFLINE`` set."""
        return self.local_files_only or is_offline()


def is_repo_id(name: str | os.PathLike) -> bool:
    """Whether ``name`` is a Hub repo id: a string ``org/name`` (one ``/``) that is no registry name and no existing path."""
    return (isinstance(name, str) and bool(_REPO_ID.match(name)) and not is_registry_name(name)
            and not os.path.exists(name))


def registry_name_of(repo_id: str) -> str | None:
    """The registry name whose own Hub repo ``repo_id`` is (``cutmix-zoo/resnet50.cutmix_in1k``), else None."""
    _, _, name = repo_id.partition("/")
    if is_registry_name(name) and get_entry(name).hub_repo == repo_id:
        return get_entry(name).name
    return None


def repo_file(repo_id: str, filename: str, revision: str | None, options: HubOptions) -> Path:
    """One file of a user's Hub repo through ``hf_hub_download`` (cached, or downloaded), or one sentence saying why not."""
    from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError

    endpoint = hub_endpoint()
    try:
        return _download(repo_id, filename, revision, options)
    except HubUnreachable as e:
        cached = "" if options.force_download else f", and the Hub cache ({options.cache() or 'default'}) has no copy"
        raise DownloadError(f"Could not fetch {filename} of the Hub repo {repo_id}: the Hub ({endpoint}) could not be "
                            f"reached ({e}){cached}.") from e
    except RevisionNotFoundError as e:
        raise DownloadError(f"The Hub repo {repo_id} has no revision {revision!r}.") from e
    except RepositoryNotFoundError as e:
        at = f" at revision {revision!r}" if revision is not None else ""
        raise UnknownModelError(f"Unknown model {repo_id!r}: it is not in the cutmix_zoo registry, not a folder, and the "
                                f"Hub ({endpoint}) has no repo {repo_id}{at} that this token can read.") from e
    except LocalEntryNotFoundError as e:
        why = "local_files_only=True or HF_HUB_OFFLINE is set" if options.offline() else "the Hub could not be reached"
        raise DownloadError(f"{filename} of the Hub repo {repo_id} is not in the Hub cache ({options.cache() or 'default'}) "
                            f"and {why}.") from e
    except EntryNotFoundError as e:
        raise DownloadError(f"The Hub repo {repo_id} has no {filename}, so it is not a model that cutmix_zoo.save_pretrained "
                            "or `cutmix-zoo publish` made.") from e
    except (HfHubHTTPError, OSError) as e:
        raise DownloadError(f"Could not fetch {filename} of the Hub repo {repo_id} from {endpoint}: {short_reason(e)}.") from e


def _download(repo_id: str, filename: str, revision: str | None, options: HubOptions) -> Path:
    """``hf_hub_download``, after one probe of the file without retries where the Hub may be asked: a Hub that cannot be
    reached gives the cached file, as ``hf_hub_download`` would, without its half-minute of retries first
    (:class:`.network.HubUnreachable` where nothing is cached, or with ``force_download``)."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    kwargs = dict(hub_download_kwargs(options), revision=revision)
    if not options.offline():
        try:
            probe_hub_file(repo_id, filename, revision, options.token, kwargs["endpoint"])
        except HubUnreachable as unreachable:
            if options.force_download:
                raise
            try:
                return Path(hf_hub_download(repo_id, filename, **dict(kwargs, local_files_only=True)))
            except LocalEntryNotFoundError:
                raise unreachable from None  # not cached either: the probe's error says why
    return Path(hf_hub_download(repo_id, filename, **kwargs))


def hub_endpoint() -> str:
    """The Hub's address as errors name it: ``HF_ENDPOINT``, else huggingface_hub's default."""
    from huggingface_hub import constants

    return (os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")


def hub_download_kwargs(options: HubOptions) -> dict[str, Any]:
    """The keyword arguments every ``hf_hub_download`` of a load takes from ``options`` and the environment."""
    return {
        "cache_dir": options.cache(),
        "force_download": options.force_download,
        "local_files_only": options.offline(),
        "token": options.token,
        "etag_timeout": hub_timeout(),
        "endpoint": os.environ.get("HF_ENDPOINT") or None,
        "library_name": LIBRARY_NAME,
    }


def repo_config(repo_id: str, revision: str | None, options: HubOptions) -> Path:
    """The ``config.json`` of a user's Hub repo, which decides the network it holds."""
    return repo_file(repo_id, CONFIG_NAME, revision, options)


def repo_weights(repo_id: str, revision: str | None, options: HubOptions) -> Path:
    """The folder (a snapshot of the Hub cache) holding a user's repo's ``model.safetensors``, downloaded if need be."""
    return repo_file(repo_id, WEIGHTS_NAME, revision, options).parent
