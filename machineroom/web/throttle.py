"""Wrong tokens from one client address, counted: after `limit` of them within `window`
seconds, that address's token checks are refused (429) until the oldest of those failures is
`window` seconds old.

Only guesses count (an unknown token, a malformed Authorization header, a wrong token at the
login page); a missing token, an expired or revoked token, or an ended browser session do not
(a restart ends every session, and the browsers' next requests are not guesses; a session id
has 256 random bits, as a token has).
The table is per address (an IPv6 client by its /64 network, which one machine usually holds
whole), kept in memory and bounded: past `max_addresses` the address whose last failure is
oldest is forgotten.
"""

from __future__ import annotations

import ipaddress
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from typing import Any

AUTH_FAILURES = 10  # wrong tokens an address may send within the window...
AUTH_WINDOW = 60.0  # ...seconds, before its token checks are answered 429
MAX_ADDRESSES = 10_000  # addresses remembered at most: 11 MiB full at 10 failures each


def client_key(scope: Mapping[str, Any]) -> str:
    """The address a request is counted under: the client's IP (as uvicorn's proxy headers
    handling left it), an IPv6 one reduced to its /64, or '-' when there is none."""
    client = scope.get("client")
    if not client:
        return "-"
    host = str(client[0])
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return host


class AuthThrottle:
    """Failure times per address, thread-safe (the login page counts from a worker thread)."""

    def __init__(
        self,
        limit: int = AUTH_FAILURES,
        window: float = AUTH_WINDOW,
        max_addresses: int = MAX_ADDRESSES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if limit < 1 or window <= 0 or max_addresses < 1:
            raise ValueError("limit, window and max_addresses must be positive")
        self.limit = limit
        self.window = window
        self.max_addresses = max_addresses
        self._clock = clock
        # address -> the times of its latest `limit` failures; oldest-touched address first
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def retry_after(self, key: str) -> float | None:
        """Seconds until `key` may try a token again, or None when it may now."""
        with self._lock:
            times = self._failures.get(key)
            if times is None:
                return None
            now = self._clock()
            self._forget_old(times, now)
            if not times:
                del self._failures[key]
                return None
            if len(times) < self.limit:
                return None
            return max(times[0] + self.window - now, 0.001)

    def failed(self, key: str) -> None:
        """Count a wrong token from `key`."""
        with self._lock:
            now = self._clock()
            times = self._failures.pop(key, None) or deque(maxlen=self.limit)
            self._forget_old(times, now)
            times.append(now)
            self._failures[key] = times  # now the most recently touched
            while len(self._failures) > self.max_addresses:
                self._failures.popitem(last=False)

    def __len__(self) -> int:
        return len(self._failures)

    def _forget_old(self, times: deque[float], now: float) -> None:
        while times and times[0] <= now - self.window:
            times.popleft()
