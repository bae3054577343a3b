"""The Hugging Face Hub as a source of weights: ``model.safetensors`` (and its ``config.json``) from an entry's repo.

The Hub is asked once, without huggingface_hub's retries, before anything is downloaded from it (one probe of the
weights file). A Hub that cannot be reached, or a network that silently drops packets, costs one connection attempt
bounded by :data:`.network.HUB_CONNECT_TIMEOUT`; a Hub that accepts the connection has
:data:`.network.HUB_READ_TIMEOUT` seconds (as in huggingface_hub) to answer, since a slow answer is not an outage
(``HF_HUB_ETAG_TIMEOUT`` sets the answer's bound, and the connection's where it is shorter). Either way the
half-minute and more of ``hf_hub_download``'s retries is not spent. Where the Hub has no such repo or file, or cannot
be reached, :func:`from_hub` says why in a clause, and the caller falls back to the original release; a pinned
revision never falls back.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import DownloadError, WeightsError
from ..files import CONFIG_NAME, WEIGHTS_NAME
from ..model_config import ModelConfig
from ..registry import LIBRARY_NAME, Entry
from .cache import read_json
from .network import HubUnreachable, hub_timeout, network_reason, probe_hub_file, short_reason
from .repo import HubOptions, hub_endpoint

logger = logging.getLogger(__name__)


def _hub_kwargs(entry: Entry, revision: str | None, hub: HubOptions) -> dict[str, Any]:
    return {
        "repo_id": entry.hub_repo,
        "filename": WEIGHTS_NAME,
        "revision": revision,
        "cache_dir": hub.cache(),
        "token": hub.token,
        "endpoint": os.environ.get("HF_ENDPOINT") or None,
        "library_name": LIBRARY_NAME,
    }


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


def _probe_hub(kwargs: dict[str, Any]) -> None:
    """Ask the Hub about the weights file once, without retries (see :func:`.network.probe_hub_file`)."""
    probe_hub_file(kwargs["repo_id"], WEIGHTS_NAME, kwargs["revision"], kwargs["token"], kwargs["endpoint"])


def _hub_failure(error: BaseException) -> str:
    """What went wrong with the Hub, as a clause after "the Hub (URL)"."""
    response = getattr(error, "response", None)
    status = getattr(response, "status_code", None)
    if isinstance(status, int):
        phrase = getattr(response, "reason_phrase", None) or getattr(response, "reason", None) or ""
        return f"answered HTTP {status} {phrase}".rstrip()
    return f"could not be reached ({error if isinstance(error, HubUnreachable) else network_reason(error)})"


def from_hub(entry: Entry, expected: ModelConfig, revision: str | None, progress: bool, force: bool,
             hub: HubOptions | None = None) -> tuple[Path | None, str]:
    """The Hub's file, or None and why it was not taken, as a clause after "the Hub (URL)" (the caller falls back).

    A config.json in the repo is checked against ``expected`` (see :func:`check_hub_config`) before the weights come;
    ``hub`` gives the Hub cache folder and the token.
    """
    from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError

    error: Exception  # what made the Hub's file unavailable, chained to an error raised below
    try:
        with _progress_bars(progress):
            kwargs = _hub_kwargs(entry, revision, hub or HubOptions())
            _probe_hub(kwargs)
            try:  # config.json first: the Hub counts a model's downloads by it, and it must describe this architecture
                config = _hub_download(dict(kwargs, filename=CONFIG_NAME), force)
            except (EntryNotFoundError, HfHubHTTPError, OSError) as e:
                logger.info("%s: no config.json from the Hub repo %s (%s)", entry.name, entry.hub_repo, short_reason(e))
                config = None  # none there (weights only), or the Hub is away: the weights' own fetch decides
            if config is not None:
                check_hub_config(entry, config, expected)
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
                            f"the Hub ({hub_endpoint()}) {why}.") from error
    return None, why


def _hub_download(kwargs: dict[str, Any], force: bool) -> Path:
    """``hf_hub_download``, with the Hub's own error where ``force_download`` wraps it in a bare ValueError
    ("Force download failed"), so a repo that is not there falls back like any other."""
    from huggingface_hub import hf_hub_download

    try:
        found = Path(hf_hub_download(**kwargs, force_download=force, etag_timeout=hub_timeout()))
    except ValueError as e:
        if force and isinstance(e.__cause__, Exception):
            raise e.__cause__ from None
        raise
    _remove_stale_incomplete(found)
    return found


def _remove_stale_incomplete(found: Path) -> None:
    """Delete the ``.incomplete`` files earlier, killed tries left beside the blob that has now arrived whole
    (``BLOB.incomplete``, ``BLOB.RANDOM.incomplete``): nothing will ever finish them. They are removed only while
    huggingface_hub's own lock of that blob is free, so a download another process is making now is left alone."""
    from filelock import FileLock, Timeout

    blob = found.resolve()
    stale = [p for p in blob.parent.glob(f"{blob.name}*.incomplete") if p.name.count(".") <= 2]
    if not stale:
        return
    lock = FileLock(str(blob.parents[2] / ".locks" / blob.parents[1].name / f"{blob.name}.lock"))
    with contextlib.suppress(OSError, Timeout), lock.acquire(timeout=0):
        for path in stale:
            path.unlink(missing_ok=True)


def check_hub_config(entry: Entry, path: Path, expected: ModelConfig) -> None:
    """Refuse a Hub repo whose config.json describes another network than ``expected`` (the entry's), in one sentence.

    The facts a config states are compared (cutmix_zoo's family, arch_args and num_classes, or timm's
    architecture); a config that states none of them leaves the check to the weights' keys and shapes.
    """
    where = f"config.json of the Hub repo {entry.hub_repo}"
    found = read_json(path)
    if found is None:
        raise WeightsError(f"The {where} is not a JSON object; the repo is not a cutmix_zoo model.")
    stated = {"family": expected.family, "arch_args": expected.arch_args, "num_classes": expected.num_classes}
    if "family" not in found and "architecture" in found:
        stated = {"architecture": expected.architecture}
    differ = {key: found[key] for key, value in stated.items() if key in found and found[key] != value}
    if differ:
        shown = ", ".join(f"{k} {v!r}" for k, v in differ.items())
        raise WeightsError(f"The {where} describes {shown}, not {entry.name}'s "
                           f"{', '.join(f'{k} {stated[k]!r}' for k in differ)}; its weights were not loaded.")
