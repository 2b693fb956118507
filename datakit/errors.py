"""User-facing errors: the CLI prints their message on one line and exits non-zero."""

from __future__ import annotations


class DatakitError(Exception):
    """Base class for every error that is the input's or the environment's fault, not a bug."""

    exit_code = 2


class InputError(DatakitError):
    """A missing folder, an unreadable list, a bad option value."""


class CorruptShardError(DatakitError):
    """A shard that is truncated, fails its hash, or holds a member that does not decode."""

    exit_code = 3


class SampleError(DatakitError):
    """One sample could not be read or converted; carries a short machine-readable reason."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class BuildError(DatakitError):
    """Some shard tasks failed; the finished ones are kept and `--resume` redoes the rest."""

    def __init__(self, message: str, report: object = None) -> None:
        super().__init__(message)
        self.report = report
