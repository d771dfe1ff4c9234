"""The feed's log and cursors (dispatch/ops/feed.py): conflation, filters, the ring's edge."""

import orjson
import pytest

from dispatch.ops import feed as feed_module
from dispatch.ops.feed import Feed, Filters, frame
from dispatch.ops.state import OpsState, Update


def incident(key: str, reports: int, district: str = "330302") -> Update:
    return Update("incidents", key, {"reports": reports}, district=district, category="x")


def values(parts: list[bytes]) -> list[tuple[str, object]]:
    return [(p["key"], p["value"]) for p in map(orjson.loads, parts)]


async def test_a_client_gets_each_changed_key_once_at_its_latest_value() -> None:
    feed = Feed()
    feed.publish([incident("a", 1), incident("b", 1)])
    cursor = feed.seq
    feed.publish([incident("a", n) for n in range(2, 50)] + [incident("c", 1)])
    assert values(feed.since(cursor, Filters()) or []) == [("a", {"reports": 49}),
                                                           ("c", {"reports": 1})]  # fmt: skip


async def test_filters_keep_other_districts_and_layers_out() -> None:
    feed = Feed()
    feed.publish([incident("a", 1, "330302"), incident("b", 1, "330303"),
                  Update("h3", "8:x", {"open": 1})])  # fmt: skip
    lucheng = Filters(districts=frozenset({"330302"}))
    assert [k for k, _ in values(feed.snapshot(lucheng))] == ["a", "8:x"]  # h3 has no district
    only_h3 = Filters(layers=frozenset({"h3"}))
    assert [k for k, _ in values(feed.since(0, only_h3) or [])] == ["8:x"]


async def test_a_deleted_key_is_sent_as_null_then_forgotten_when_the_ring_moves_on(
    monkeypatch,
) -> None:
    monkeypatch.setattr(feed_module, "RING", 4)
    feed = Feed()
    feed.publish([incident("a", 1)])
    cursor = feed.seq
    feed.publish([Update("incidents", "a", None)])
    assert values(feed.since(cursor, Filters()) or []) == [("a", None)]
    assert feed.snapshot(Filters()) == []
    feed.publish([incident(str(n), 1) for n in range(6)])
    assert feed.since(cursor, Filters()) is None  # fell out of the ring: snapshot needed
    assert ("incidents", "a") not in feed._latest


async def test_a_frame_is_valid_json_with_its_updates() -> None:
    feed = Feed()
    feed.publish([incident("a", 1)])
    body = orjson.loads(frame("delta", feed, feed.snapshot(Filters()), **{"from": 0}))
    assert body["type"] == "delta" and body["from"] == 0 and body["seq"] == 1
    assert body["updates"] == [{"layer": "incidents", "key": "a", "value": {"reports": 1}}]


def test_filters_from_a_hello_are_checked() -> None:
    from dispatch.ops.views import Refused, parse_filters

    assert parse_filters(None) == Filters()
    chosen = parse_filters({"layers": ["h3", "sla"], "districts": ["330302"]})
    assert chosen.layers == {"h3", "sla"} and chosen.districts == {"330302"}
    for bad in ({"layers": ["nope"]}, {"districts": "330302"}, {"categories": [1]}, [],
                {"priorities": ["x"] * 101}):  # fmt: skip
        try:
            parse_filters(bad)
        except Refused as refused:
            assert refused.code == 4400
        else:
            raise AssertionError(f"{bad!r} was taken")


async def test_a_resume_is_honoured_only_on_the_same_stream_within_the_ring(monkeypatch) -> None:
    from dispatch.ops.views import _resume_cursor

    monkeypatch.setattr(feed_module, "RING", 3)
    feed = Feed()
    feed.publish([incident(str(n), 1) for n in range(2)])
    assert _resume_cursor(feed, {"stream": feed.stream, "seq": 1}) == 1
    assert _resume_cursor(feed, {"stream": "other", "seq": 1}) is None
    assert _resume_cursor(feed, {"stream": feed.stream, "seq": 99}) is None  # from the future
    feed.publish([incident(str(n), 1) for n in range(2, 6)])
    assert _resume_cursor(feed, {"stream": feed.stream, "seq": 1}) is None  # out of the ring


async def test_replacing_the_state_sends_only_the_differences() -> None:
    feed = Feed()
    old = OpsState()
    old.layers["incidents"] = {"a": incident("a", 1), "b": incident("b", 1)}
    feed.replace_state(old)
    cursor = feed.seq
    new = OpsState()
    new.layers["incidents"] = {"a": incident("a", 1), "c": incident("c", 1)}
    feed.replace_state(new)
    assert feed.state is new
    changes = sorted(values(feed.since(cursor, Filters()) or []))
    assert changes == [("b", None), ("c", {"reports": 1})]


async def test_an_address_that_guessed_too_many_keys_is_refused_before_any_lookup() -> None:
    from types import SimpleNamespace

    from dispatch.ops.views import Refused, _authorise
    from hub.guessing import GuessingLimiter

    limiter = GuessingLimiter(max_failures=3, window_s=60)
    for _ in range(3):
        limiter.failed("192.0.2.9")
    # No key resolver and no pool: the refusal must come before the key is looked up.
    app = SimpleNamespace(state=SimpleNamespace(guessing=limiter))
    websocket = SimpleNamespace(app=app, client=SimpleNamespace(host="192.0.2.9"), headers={})
    with pytest.raises(Refused, match="too many failed") as refused:
        await _authorise(websocket, {"key": "anything"})  # type: ignore[arg-type]
    assert refused.value.code == 4429
