"""Why a connection failed, in a few words, whichever HTTP client (requests, urllib3, httpx) wrapped the socket's error.

The Hub and the original release are fetched through different clients, each wrapping the operating system's error in
its own exceptions; both kinds of failure are reported here as the same short clauses ("the connection was refused",
"no answer in time"), which the one-sentence errors of :mod:`.fetch` embed. The Hub's timeouts are here too: a short one
to connect, which bounds a black hole, and a longer one for a connected Hub's answer.
"""

from __future__ import annotations

import os
import socket
from typing import Any


def short_reason(error: BaseException) -> str:
    """The first line of ``error``'s message (at most 300 characters, no final full stop), else its type's name."""
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


def is_timeout(error: BaseException) -> bool:
    """Whether ``error`` is, or wraps, a timeout of any client."""
    return any(isinstance(e, (TimeoutError, socket.timeout)) or "timeout" in type(e).__name__.lower() for e in _chain(error))


def network_reason(error: BaseException) -> str:
    """Why a connection failed, in a few words, whichever client (requests, urllib3, httpx) wrapped the socket's error."""
    chain = _chain(error)
    text = " ".join(str(e) for e in chain).lower()
    if any(isinstance(e, socket.gaierror) for e in chain) or any(
            s in text for s in ("name or service not known", "nodename nor servname", "getaddrinfo failed", "failed to resolve")):
        return "its host name could not be resolved"
    if any(isinstance(e, ConnectionRefusedError) for e in chain) or "connection refused" in text:
        return "the connection was refused"
    if is_timeout(error) or "timed out" in text:
        return "no answer in time"
    if any(isinstance(e, ConnectionResetError) for e in chain) or "connection reset" in text:
        return "the connection was reset"
    return short_reason(chain[-1])


# A network that silently drops packets costs a load HUB_CONNECT_TIMEOUT then the original release's CONNECT_TIMEOUT,
# about 5 s (recent huggingface_hub releases add up to 3 s of their own, once a process, asking for their agent registry).
HUB_CONNECT_TIMEOUT = 3.0  # seconds a connection to the Hub has to complete: nothing answering the SYN is a black hole
HUB_READ_TIMEOUT = 10.0  # seconds a connected Hub has to answer about a file: huggingface_hub's own default


def hub_timeouts() -> tuple[float, float]:
    """(connect, read) seconds for the Hub's answer about a file: ``HF_HUB_ETAG_TIMEOUT`` (read at call time;
    huggingface_hub reads it once, at import) bounds the answer, and the connection where it is shorter than
    :data:`HUB_CONNECT_TIMEOUT`; without it, :data:`HUB_CONNECT_TIMEOUT` and :data:`HUB_READ_TIMEOUT`."""
    try:
        read = float(os.environ.get("HF_HUB_ETAG_TIMEOUT", "").strip() or HUB_READ_TIMEOUT)
    except ValueError:
        read = HUB_READ_TIMEOUT
    return min(HUB_CONNECT_TIMEOUT, read), read


def hub_timeout() -> Any:
    """The Hub's timeouts as huggingface_hub's HTTP client takes them: an httpx (or httpx2) ``Timeout`` with a short
    connect bound since huggingface_hub 1.0, a requests ``(connect, read)`` tuple before. ``get_hf_file_metadata`` and
    ``hf_hub_download`` pass the value to that client as it is, so a connection that never completes gives up in
    seconds while a live Hub that is slow to answer still gets its ten."""
    connect, read = hub_timeouts()
    from huggingface_hub.utils import _http

    for client in ("httpx2", "httpx"):
        module = getattr(_http, client, None)
        if module is not None:
            return module.Timeout(read, connect=connect)
    return connect, read


class HubUnreachable(OSError):
    """The Hub did not answer (no connection, no name, no answer in time); the message says why in a few words."""


def probe_hub_file(repo_id: str, filename: str, revision: str | None, token: str | bool | None,
                   endpoint: str | None) -> None:
    """Ask the Hub about one file once, within :func:`hub_timeout` and with no retry: ``hf_hub_download`` retries an
    unreachable Hub (or one answering 5xx) for half a minute and more before it gives up; this fails in the time one
    connection takes (:class:`HubUnreachable`). The Hub's own errors (no such repo, file or revision; HTTP 5xx) are
    raised as they are."""
    from huggingface_hub import get_hf_file_metadata, hf_hub_url
    from huggingface_hub.errors import HfHubHTTPError

    from ..registry import LIBRARY_NAME

    url = hf_hub_url(repo_id, filename, revision=revision, endpoint=endpoint)
    try:
        get_hf_file_metadata(url, token=token, timeout=hub_timeout(), library_name=LIBRARY_NAME)
    except HfHubHTTPError:
        raise
    except Exception as e:  # the HTTP client's own connection errors (requests' or httpx's, by huggingface_hub version)
        raise HubUnreachable(network_reason(e)) from e
