"""Why a connection failed, in a few words, whichever HTTP client (requests, urllib3, httpx) wrapped the socket's error.

The Hub and the original release are fetched through different clients, each wrapping the operating system's error in
its own exceptions; both kinds of failure are reported here as the same short clauses ("the connection was refused",
"no answer in time"), which the one-sentence errors of :mod:`.fetch` embed.
"""

from __future__ import annotations

import socket


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
