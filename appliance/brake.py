"""A brake on guessing tokens: too many failed attempts from one address answer 429 for a while.

Tokens are 256-bit random strings, so guessing cannot succeed; the brake keeps a guesser from
filling the audit log and the CPU, and makes the attempt visible (each refusal is audited).
Valid tokens are never slowed: the check is one dictionary look-up.
"""

from __future__ import annotations

import math
import time
from collections import deque

from appliance.errors import ApplianceError

WINDOW_S = 60.0
MAX_FAILURES = 10


class TooManyAttempts(ApplianceError):
    status = 429
    error_type = "rate_limit_error"

    def __init__(self, retry_after: int) -> None:
        super().__init__(
            f"too many failed sign-in attempts from this address; retry in {retry_after} s",
            code="too_many_failed_attempts",
            headers={"Retry-After": str(retry_after)},
        )


class FailureBrake:
    def __init__(self, window_s: float = WINDOW_S, max_failures: int = MAX_FAILURES) -> None:
        self.window_s = window_s
        self.max_failures = max_failures
        self._failures: dict[str, deque[float]] = {}

    def _recent(self, address: str, now: float) -> deque[float]:
        failures = self._failures.get(address)
        if failures is None:
            return deque()
        while failures and failures[0] <= now - self.window_s:
            failures.popleft()
        if not failures:
            del self._failures[address]
        return failures

    def check(self, address: str) -> None:
        """Raise 429 while ``address`` has failed too often within the window."""
        now = time.monotonic()
        failures = self._recent(address, now)
        if len(failures) >= self.max_failures:
            wait = failures[len(failures) - self.max_failures] + self.window_s - now
            raise TooManyAttempts(max(1, math.ceil(wait)))

    def failed(self, address: str) -> None:
        now = time.monotonic()
        self._recent(address, now)
        self._failures.setdefault(address, deque()).append(now)
        if len(self._failures) > 10_000:  # bounded memory under a spray from many addresses
            oldest = min(self._failures, key=lambda a: self._failures[a][-1])
            del self._failures[oldest]
