"""One retry policy for remote I/O: exponential back-off on transient errors, none on missing files."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, TypeVar

from ..errors import InputError

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """``retries`` extra attempts after the first, sleeping ``backoff_s``, then twice that, and so on."""

    retries: int = 4
    backoff_s: float = 0.5

    def delays(self) -> list[float]:
        return [self.backoff_s * (2**i) for i in range(self.retries)]


def transient_errors() -> tuple[type[BaseException], ...]:
    """Errors worth another try: OS and timeout errors, and aiohttp's client errors when it is installed."""
    errors: list[type[BaseException]] = [OSError, TimeoutError]
    try:
        import aiohttp
    except ImportError:
        return tuple(errors)
    errors.append(aiohttp.ClientError)
    return tuple(errors)


def with_retries(fn: Callable[[], T], what: str, policy: RetryPolicy = RetryPolicy()) -> T:
    """Call ``fn``; transient errors are retried, a missing object is an InputError at once, and the
    last transient error becomes an InputError naming ``what``."""
    transient = transient_errors()
    delays = policy.delays()
    for attempt in range(policy.retries + 1):
        try:
            return fn()
        except FileNotFoundError:
            raise InputError(f"not found: {what}") from None
        except transient as err:
            if attempt == policy.retries:
                raise InputError(f"I/O on {what} failed after {policy.retries + 1} tries: {err}") from None
            time.sleep(delays[attempt])
    raise AssertionError("unreachable")
