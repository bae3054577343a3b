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


class OutputError(ZooError, OSError):
    """A file or folder that cannot be written (a path under a file or onto a folder, a read-only or full disk, no
    permission), or an output folder that another process is writing now (one writer per folder)."""


class TrainingError(ZooError, RuntimeError):
    """A training run that cannot start or go on: an --output it cannot write, a loss or weights that became non-finite."""


EXIT_FAILURE = 1  # a failure while working: data, files, weights, downloads
EXIT_USAGE = 2  # bad input: an argument or a model name that cannot work
EXIT_KEYBOARD_INTERRUPT = 130  # Ctrl-C (128 + SIGINT)


def exit_code(error: BaseException) -> int:
    """The exit status of a command that ended with ``error``: 2 bad input (InvalidArgumentError, UnknownModelError),
    130 Ctrl-C (KeyboardInterrupt), 1 any other failure while working.

    The other statuses are a command's own return values, not errors: 0 done, and 143 (128 + SIGTERM) for a trainer
    that SIGTERM stopped with its checkpoint saved (``cutmix_zoo.train.config.EXIT_INTERRUPTED``).
    """
    if isinstance(error, (InvalidArgumentError, UnknownModelError)):
        return EXIT_USAGE
    if isinstance(error, KeyboardInterrupt):
        return EXIT_KEYBOARD_INTERRUPT
    return EXIT_FAILURE
