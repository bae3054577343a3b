"""Errors a user can cause, each carrying one sentence that says what went wrong and what to do.

The CLI prints ``str(error)`` as its only line, so messages are complete sentences with no
traceback needed to understand them.
"""


class ZooError(Exception):
    """Base class of every error cutmix_zoo raises on purpose."""


class UnknownModelError(ZooError, LookupError):
    """A model name that is not in the registry."""

    def __str__(self) -> str:  # LookupError would quote the message like a KeyError.
        return str(self.args[0])


class InvalidArgumentError(ZooError, ValueError):
    """An argument value that cannot work (negative num_classes, out_indices out of range, ...)."""


class WeightsError(ZooError, ValueError):
    """A weights file that is missing, unreadable, unsafe, or made for another architecture."""


class DownloadError(ZooError, OSError):
    """A file that could not be fetched (HTTP error, truncated transfer, wrong checksum, offline)."""
