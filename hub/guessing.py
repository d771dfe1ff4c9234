"""Failed authentications per client address, so keys and device tokens cannot be guessed at
speed.

Each address has a leaky bucket of failures: every unknown API key or device token it presents
adds one, and the bucket drains at ``max_failures`` per ``window_s``. A full bucket means the
address is refused (HTTP 429, MQTT CONNACK "quota exceeded") before the next key or token is
even looked up, until one failure has drained. So an address gets ``max_failures`` guesses at
once and then ``max_failures`` per window, however fast it asks; successes cost nothing.

IPv6 addresses count by their /64 network, which one host usually holds whole. The table holds
at most ``max_clients`` addresses (about 150 bytes each); when full, the address that failed
least recently is forgotten first.
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections.abc import Callable


def client_key(host: str) -> str:
    """The address failures are counted under: an IPv6 address's /64, else the host as given.

    >>> client_key("2001:db8:1:2:aaaa::1")
    '2001:db8:1:2::/64'
    >>> client_key("10.1.2.3")
    '10.1.2.3'
    """
    if ":" not in host:
        return host
    try:
        address = ipaddress.IPv6Address(host.split("%", 1)[0])
    except ValueError:
        return host
    if address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(ipaddress.IPv6Network((address, 64), strict=False))


class TooManyFailures(Exception):
    """The client's address has failed too often; it may try again in ``retry_after`` s."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"too many failed authentications from this address; "
                         f"try again in {retry_after} s")  # fmt: skip
        self.retry_after = retry_after


class GuessingLimiter:
    """Counts failed authentications per client address; see the module's docstring."""

    def __init__(
        self,
        *,
        max_failures: int,
        window_s: float,
        max_clients: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._capacity = float(max_failures)
        self._drain_per_s = max_failures / window_s
        self._max_clients = max_clients
        self._clock = clock
        # address -> (failures in the bucket, when last counted); in order of the last failure
        self._buckets: dict[str, tuple[float, float]] = {}

    def _level(self, key: str, now: float) -> float:
        entry = self._buckets.get(key)
        if entry is None:
            return 0.0
        level, at = entry
        return max(0.0, level - (now - at) * self._drain_per_s)

    def retry_after(self, host: str) -> int | None:
        """Whole seconds until ``host`` may try again, or None when it may try now."""
        key = client_key(host)
        now = self._clock()
        level = self._level(key, now)
        if level == 0.0:
            self._buckets.pop(key, None)  # drained: nothing to remember
            return None
        if level <= self._capacity - 1:
            return None
        # (less a hair: 1 / (20 / 60) is 3.0000000000000004 in floating point)
        return max(1, math.ceil((level - (self._capacity - 1)) / self._drain_per_s - 1e-9))

    def check(self, host: str) -> None:
        """Raise `TooManyFailures` when ``host`` must wait before its next attempt."""
        wait = self.retry_after(host)
        if wait is not None:
            raise TooManyFailures(wait)

    def failed(self, host: str) -> None:
        """Count one failed authentication from ``host``."""
        key = client_key(host)
        now = self._clock()
        level = self._level(key, now) + 1
        self._buckets.pop(key, None)  # re-inserted last: the dict's order is recency
        if len(self._buckets) >= self._max_clients:
            del self._buckets[next(iter(self._buckets))]
        self._buckets[key] = (level, now)

    def __len__(self) -> int:
        return len(self._buckets)
