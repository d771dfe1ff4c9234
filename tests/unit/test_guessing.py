"""The guessing limiter (hub/guessing.py) on a fake clock: failures per address, drained at the
window's rate, successes free, the table bounded."""

import pytest

from hub.guessing import GuessingLimiter, TooManyFailures, client_key


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def limiter(clock: Clock, *, max_failures: int = 20, window_s: float = 60.0,
            max_clients: int = 100) -> GuessingLimiter:  # fmt: skip
    return GuessingLimiter(max_failures=max_failures, window_s=window_s, max_clients=max_clients,
                           clock=clock)  # fmt: skip


def test_twenty_failures_then_refused_until_one_drains():
    clock = Clock()
    guessing = limiter(clock)
    for _ in range(20):
        assert guessing.retry_after("10.0.0.1") is None
        guessing.failed("10.0.0.1")
    assert guessing.retry_after("10.0.0.1") == 3  # 20 per minute: one drains every 3 s
    with pytest.raises(TooManyFailures) as refused:
        guessing.check("10.0.0.1")
    assert refused.value.retry_after == 3 and "3 s" in str(refused.value)
    clock.now += 2.9
    assert guessing.retry_after("10.0.0.1") == 1
    clock.now += 0.1
    assert guessing.retry_after("10.0.0.1") is None  # one more guess...
    guessing.failed("10.0.0.1")
    assert guessing.retry_after("10.0.0.1") == 3  # ...and refused again


def test_a_steady_twenty_per_minute_is_never_refused():
    clock = Clock()
    guessing = limiter(clock)
    for _ in range(200):
        guessing.check("10.0.0.1")
        guessing.failed("10.0.0.1")
        clock.now += 3.0


def test_addresses_are_counted_apart_and_a_drained_one_is_forgotten():
    clock = Clock()
    guessing = limiter(clock, max_failures=3)
    for _ in range(3):
        guessing.failed("10.0.0.1")
    assert guessing.retry_after("10.0.0.1") is not None
    assert guessing.retry_after("10.0.0.2") is None
    clock.now += 60
    assert guessing.retry_after("10.0.0.1") is None
    assert len(guessing) == 0


def test_the_table_is_bounded_and_forgets_the_least_recent_failure_first():
    clock = Clock()
    guessing = limiter(clock, max_failures=2, max_clients=3)
    for _ in range(2):
        guessing.failed("10.0.0.1")
    for address in ("10.0.0.2", "10.0.0.3", "10.0.0.1", "10.0.0.4"):
        guessing.failed(address)
    assert len(guessing) == 3
    assert guessing.retry_after("10.0.0.1") is not None  # failed again lately: kept
    assert guessing.retry_after("10.0.0.2") is None  # the oldest: forgotten
    for n in range(10_000):
        guessing.failed(f"10.1.{n // 256}.{n % 256}")
    assert len(guessing) == 3


@pytest.mark.parametrize(
    ("host", "key"),
    [("10.1.2.3", "10.1.2.3"), ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
     ("2001:db8:1:2:ffff:1:2:3", "2001:db8:1:2::/64"), ("::ffff:10.1.2.3", "10.1.2.3"),
     ("fe80::1%eth0", "fe80::/64"), ("", ""), ("testclient", "testclient")],
)  # fmt: skip
def test_ipv6_addresses_count_by_their_64(host, key):
    assert client_key(host) == key


def test_one_ipv6_host_cannot_rotate_addresses_within_its_64():
    guessing = limiter(Clock(), max_failures=3)
    for n in range(3):
        guessing.failed(f"2001:db8::{n + 1}")
    assert guessing.retry_after("2001:db8::ffff") is not None
