"""ThingsBoard device API bodies (iot_ingest/payloads.py): shapes, casting, clamping, refusals."""

import json
from datetime import timedelta
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from iot_ingest.payloads import (
    FUTURE_TOLERANCE,
    MAX_AGE,
    PayloadError,
    Reading,
    parse_attributes,
    parse_gateway_telemetry,
    parse_telemetry,
)

NOW = 1_780_000_000_000  # 2026-05-28T20:26:40Z
SECOND = 1_000
HOUR = 3_600 * SECOND
MILLISECOND = timedelta(milliseconds=1)
PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def body(value: Any) -> bytes:
    return orjson.dumps(value)


def telemetry(value: Any) -> list[Reading]:
    return parse_telemetry(body(value), now_ms=NOW)


def refusal(parse: Any, raw: bytes, **kwargs: Any) -> str:
    with pytest.raises(PayloadError) as caught:
        parse(raw, **kwargs)
    return str(caught.value)


def telemetry_refusal(value: Any) -> str:
    return refusal(parse_telemetry, body(value), now_ms=NOW)


# --- telemetry shapes ------------------------------------------------------------------------


def test_plain_object_is_one_reading_at_server_time() -> None:
    assert telemetry({"temperature": 21.5, "humidity": 48}) == [
        Reading(NOW, {"temperature": 21.5, "humidity": 48})
    ]


def test_timestamped_object() -> None:
    assert telemetry({"ts": NOW - HOUR, "values": {"t": 1}}) == [Reading(NOW - HOUR, {"t": 1})]


def test_sdk_body_array_of_one_timestamped_object() -> None:
    raw = b'[{"ts": 1779999999000, "values": {"temperature": 21.5, "humidity": "48", "ok": true}}]'
    assert parse_telemetry(raw, now_ms=NOW) == [
        Reading(1_779_999_999_000, {"temperature": 21.5, "humidity": 48, "ok": True})
    ]


def test_array_mixing_plain_and_timestamped_keeps_order() -> None:
    readings = telemetry(
        [
            {"a": 1},
            {"ts": NOW - 2 * SECOND, "values": {"b": 2}},
            {"ts": NOW - SECOND, "values": {"c": 3}},
        ]
    )
    assert readings == [
        Reading(NOW, {"a": 1}),
        Reading(NOW - 2 * SECOND, {"b": 2}),
        Reading(NOW - SECOND, {"c": 3}),
    ]


def test_sdk_metadata_beside_ts_and_values_is_ignored() -> None:
    item = {"ts": NOW, "values": {"a": 1}, "metadata": {"publishedTs": NOW, "connector": "x"}}
    assert telemetry([item]) == [Reading(NOW, {"a": 1})]


def test_ts_without_values_is_a_plain_key_as_in_thingsboard() -> None:
    assert telemetry({"ts": 5, "t": 1}) == [Reading(NOW, {"ts": 5, "t": 1})]


@pytest.mark.parametrize(
    ("ts", "expected"),
    [
        (NOW - 5, NOW - 5),
        (str(NOW - 5), NOW - 5),  # Long.parseLong accepts a digit string
        (f"00{NOW - 5}", NOW - 5),
        (float(NOW - 5), NOW - 5),
        (NOW - 5 + 0.9, NOW - 5),  # time.time() * 1000: truncated like Gson's getAsLong
    ],
)
def test_ts_forms(ts: Any, expected: int) -> None:
    assert telemetry({"ts": ts, "values": {"a": 1}})[0].ts_ms == expected


def test_exponent_ts_is_a_number() -> None:
    assert parse_telemetry(b'{"ts": 1.7799e12, "values": {"a": 1}}', now_ms=NOW)[0].ts_ms == (
        1_779_900_000_000
    )


def test_leading_bom_is_skipped() -> None:
    assert parse_telemetry(b'\xef\xbb\xbf{"a": 1}', now_ms=NOW) == [Reading(NOW, {"a": 1})]


# --- values ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("12.5", 12.5),
        ("7", 7),
        ("-7", -7),
        ("007", 7),
        ("-0", 0),
        ("12.0", 12.0),
        (".5", 0.5),
        ("-.5", -0.5),
        ("9223372036854775807", 9_223_372_036_854_775_807),
        ("0.1234567890123456", 0.1234567890123456),
    ],
)
def test_numeric_strings_are_cast(raw: str, expected: float) -> None:
    value = telemetry({"k": raw})[0].values["k"]
    assert value == expected
    assert type(value) is type(expected)


@pytest.mark.parametrize(
    "raw",
    [
        "12.",  # isParsable: the last character cannot be the point
        "+7",
        "1e5",
        "1_000",
        " 7",
        "7 ",
        "0x1F",
        "1.2.3",
        "-",
        ".",
        "",
        "٣",  # an Arabic-Indic digit: not ASCII
        "²",
        "9223372036854775808",  # beyond a long: ThingsBoard keeps the string
        "0.12345678901234567",  # 17 fraction digits: ThingsBoard keeps the string
        "on",
        "离线",
    ],
)
def test_other_strings_stay_strings(raw: str) -> None:
    assert telemetry({"k": raw})[0].values["k"] == raw


def test_numbers_booleans_and_null() -> None:
    reading = telemetry({"i": 3, "f": 2.5, "neg": -1, "yes": True, "no": False, "gone": None})[0]
    assert reading.values == {"i": 3, "f": 2.5, "neg": -1, "yes": True, "no": False}
    assert type(reading.values["yes"]) is bool
    assert type(reading.values["i"]) is int


def test_string_of_512_characters_is_kept() -> None:
    assert telemetry({"k": "x" * 512})[0].values["k"] == "x" * 512


def test_chinese_keys_and_values() -> None:
    assert telemetry({"水位": "正常", "流量": "3.5"})[0].values == {"水位": "正常", "流量": 3.5}


def test_all_null_reading_is_dropped_not_refused() -> None:
    assert telemetry([{"a": None}, {"ts": NOW, "values": {"b": None}}, {"c": 1}]) == [
        Reading(NOW, {"c": 1})
    ]
    assert telemetry({"a": None}) == []


def test_key_of_64_characters_and_200_keys_are_accepted() -> None:
    values = {f"k{i:03}": i for i in range(199)} | {"x" * 64: 1}
    assert len(telemetry({"ts": NOW, "values": values})[0].values) == 200


def test_array_of_1000_items_is_accepted() -> None:
    assert len(telemetry([{"a": i} for i in range(1_000)])) == 1_000


# --- timestamps ------------------------------------------------------------------------------


def test_body_8_hours_ahead_is_shifted_back_keeping_its_spacing() -> None:
    # The SDK's HTTP client stamps Beijing local time as if it were UTC.
    readings = telemetry([{"ts": NOW + 8 * HOUR - 20 * SECOND + i * 10 * SECOND,
                           "values": {"a": i}} for i in range(3)])  # fmt: skip
    assert readings == [Reading(NOW - 20 * SECOND + i * 10 * SECOND, {"a": i}, clamped=True)
                        for i in range(3)]  # fmt: skip


def test_only_the_bodys_timestamped_readings_move() -> None:
    readings = telemetry([{"a": 1}, {"ts": NOW - HOUR, "values": {"a": 2}},
                          {"ts": NOW + 2 * HOUR, "values": {"a": 3}}])  # fmt: skip
    assert readings == [Reading(NOW, {"a": 1}), Reading(NOW - 3 * HOUR, {"a": 2}, clamped=True),
                        Reading(NOW, {"a": 3}, clamped=True)]  # fmt: skip


def test_future_within_tolerance_is_kept() -> None:
    edge = NOW + FUTURE_TOLERANCE // MILLISECOND
    assert telemetry({"ts": edge, "values": {"a": 1}}) == [Reading(edge, {"a": 1})]
    assert telemetry({"ts": edge + 1, "values": {"a": 1}}) == [Reading(NOW, {"a": 1}, True)]


def test_oldest_accepted_ts_is_max_age_before_now() -> None:
    oldest = NOW - MAX_AGE // MILLISECOND
    assert telemetry({"ts": oldest, "values": {"a": 1}}) == [Reading(oldest, {"a": 1})]


def test_too_old_is_refused() -> None:
    ts = NOW - MAX_AGE // MILLISECOND - 1
    assert telemetry_refusal({"ts": ts, "values": {"a": 1}}) == (
        f'"ts" {ts} is more than 30 days before the server time {NOW}'
    )


def test_too_old_in_seconds_gets_a_hint() -> None:
    assert telemetry_refusal([{"a": 1}, {"ts": NOW // 1000, "values": {"a": 1}}]) == (
        f'item 1: "ts" {NOW // 1000} is more than 30 days before the server time {NOW} '
        "(seconds instead of milliseconds?)"
    )


@pytest.mark.parametrize(
    ("ts", "reason"),
    [
        (-1, '"ts" -1 is outside 0 <= ts < 2^53'),
        (2**53, f'"ts" {2**53} is outside 0 <= ts < 2^53'),
        (1e300, f'"ts" {int(1e300)} is outside 0 <= ts < 2^53'),
        (True, '"ts" must be an integer of epoch milliseconds, got true'),
        (None, '"ts" must be an integer of epoch milliseconds, got null'),
        ("1.7e12", '"ts" must be an integer of epoch milliseconds, got "1.7e12"'),
        ("-5", '"ts" must be an integer of epoch milliseconds, got "-5"'),
        ("", '"ts" must be an integer of epoch milliseconds, got ""'),
        ("1" * 30, f'"ts" must be an integer of epoch milliseconds, got "{"1" * 30}"'),
        ({"s": 1}, '"ts" must be an integer of epoch milliseconds, got {"s":1}'),
        ([1], '"ts" must be an integer of epoch milliseconds, got [1]'),
    ],
)
def test_bad_ts_is_refused(ts: Any, reason: str) -> None:
    assert telemetry_refusal({"ts": ts, "values": {"a": 1}}).startswith(reason)


def test_an_empty_object_is_no_readings_as_the_sdk_connection_test_needs() -> None:
    assert parse_telemetry(b"{}", now_ms=NOW) == []


# --- refusals --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (1, "telemetry must be a JSON object or an array of objects, got a number"),
        ("x", "telemetry must be a JSON object or an array of objects, got a string"),
        (None, "telemetry must be a JSON object or an array of objects, got null"),
        (True, "telemetry must be a JSON object or an array of objects, got a boolean"),
        ([], "empty array"),
        ([{"a": 1}, 5], "item 1: must be a JSON object, got a number"),
        ([{"a": 1}, []], "item 1: must be a JSON object, got an array"),
        ([{}], "item 0: empty object"),
        ({"ts": NOW, "values": {}}, '"values": empty object'),
        ({"ts": NOW, "values": [1]}, '"values" must be a JSON object, got an array'),
        ({"ts": NOW, "values": None}, '"values" must be a JSON object, got null'),
        (
            {"ts": NOW, "values": {"a": 1}, "b": 2},
            'an object with "ts" and "values" may hold only "metadata" besides, got key "b"',
        ),
        (
            {"ts": NOW, "values": {"a": 1}, "metadata": 3},
            '"metadata" must be a JSON object, got a number',
        ),
        (
            {"a": {"b": 1}},
            'key "a": nested objects and arrays are not accepted as values, got an object',
        ),
        (
            [{"ts": NOW, "values": {"ok": 1, "list": [1, 2]}}],
            'item 0: "values": key "list": nested objects and arrays are not accepted as values, '
            "got an array",
        ),
        (
            {"values": {"a": 1}},
            'key "values": nested objects and arrays are not accepted as values, got an object',
        ),
        ({"a": "NaN"}, 'key "a": NaN and Infinity are not accepted'),
        ({"a": "Infinity"}, 'key "a": NaN and Infinity are not accepted'),
        ({"a": "-Infinity"}, 'key "a": NaN and Infinity are not accepted'),
        ({"a": "+inf"}, 'key "a": NaN and Infinity are not accepted'),
        ({"a": "nan"}, 'key "a": NaN and Infinity are not accepted'),
        ({"a": "9" * 400 + ".5"}, 'key "a": number overflows to Infinity'),
        ({"a": 2**63}, 'key "a": integer outside the 64-bit range'),
        ({"a": "x" * 513}, 'key "a": string longer than 512 characters'),
        ({"": 1}, "empty key"),
        ({"k" * 65: 1}, f'key "{"k" * 64}…" is longer than 64 characters'),
        ({"a\nb": 1}, 'key "a\\nb" contains a control character'),
        ({"a\x00": 1}, 'key "a\\u0000" contains a control character'),
        ({"a\x85": 1}, 'key "a\x85" contains a control character'),
        ({f"k{i}": i for i in range(201)}, "object has 201 keys, more than 200"),
        ([{"a": 1}] * 1_001, "array has 1001 items, more than 1000"),
    ],
)
def test_refusals_name_the_reason(value: Any, reason: str) -> None:
    assert telemetry_refusal(value) == reason


def test_refusal_names_item_and_key() -> None:
    items = [{"ts": NOW, "values": {"a": 1}}, {"ts": NOW, "values": {"a": 1, "b": "NaN"}}]
    assert (
        telemetry_refusal(items) == 'item 1: "values": key "b": NaN and Infinity are not accepted'
    )


def test_a_refusal_anywhere_refuses_the_whole_body() -> None:
    with pytest.raises(PayloadError):
        telemetry([{"a": 1}] * 10 + [{"a": {"nested": 1}}])


def test_non_printable_but_not_control_key_is_accepted() -> None:
    # U+200B ZERO WIDTH SPACE is a format character, not a control character.
    assert telemetry({"a\u200b": 1})[0].values == {"a\u200b": 1}


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"\xff\xfe{}", "body is not valid UTF-8"),
        (b'{"a": "\xc3"}', "body is not valid UTF-8"),
        (b'{"a": "\xed\xa0\x80"}', "body is not valid UTF-8"),  # an encoded surrogate
        (b"", "invalid JSON: Input is a zero-length, empty document"),
        (b'{"a": 1', "invalid JSON: "),
        (b'{"a": NaN}', "invalid JSON: "),
        (b'{"a": Infinity}', "invalid JSON: "),
        (b'{"a": 1e400}', "invalid JSON: number is infinity when parsed as double"),
        (b'{"a": "\\ud800"}', "invalid JSON: "),
        (b"[" * 2_000 + b"]" * 2_000, "invalid JSON: "),
    ],
)
def test_bad_bytes_are_refused(raw: bytes, reason: str) -> None:
    assert refusal(parse_telemetry, raw, now_ms=NOW).startswith(reason)


# --- attributes ------------------------------------------------------------------------------


def test_attributes_flat_object() -> None:
    raw = b'{"firmware": "1.2.0", "interval": "30", "gps": false, "lat": 27.99, "note": null}'
    assert parse_attributes(raw) == {
        "firmware": "1.2.0",
        "interval": 30,
        "gps": False,
        "lat": 27.99,
    }


def test_attributes_ts_is_an_ordinary_key() -> None:
    assert parse_attributes(b'{"ts": 5, "values": "x"}') == {"ts": 5, "values": "x"}


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"[]", "attributes must be a JSON object, got an array"),
        (b'[{"a": 1}]', "attributes must be a JSON object, got an array"),
        (b'"a"', "attributes must be a JSON object, got a string"),
        (b"{}", "empty object"),
        (
            b'{"a": {"b": 1}}',
            'key "a": nested objects and arrays are not accepted as values, got an object',
        ),
        (b'{"a": "Infinity"}', 'key "a": NaN and Infinity are not accepted'),
        (b'{"": 1}', "empty key"),
        (b"{", "invalid JSON: "),
        # Regression: PostgreSQL refused it: HTTP said only its error class, MQTT closed (0x80).
        (b'{"a": "x\\u0000y"}', 'key "a": U+0000 is not accepted in an attribute'),
    ],
)
def test_attribute_refusals(raw: bytes, reason: str) -> None:
    assert refusal(parse_attributes, raw).startswith(reason)


# --- gateway ---------------------------------------------------------------------------------


def gateway(value: Any) -> dict[str, list[Reading]]:
    return parse_gateway_telemetry(body(value), now_ms=NOW)


def gateway_refusal(value: Any) -> str:
    return refusal(parse_gateway_telemetry, body(value), now_ms=NOW)


def test_gateway_devices_to_readings() -> None:
    parsed = gateway(
        {
            "Device A": [
                {"ts": NOW - 2 * SECOND, "values": {"temperature": 42}},
                {"ts": NOW - SECOND, "values": {"temperature": "43"}},
            ],
            "泵站 7": [{"rpm": 900}, {"ts": NOW + 8 * HOUR, "values": {"rpm": 910}}],
        }
    )
    assert parsed == {
        "Device A": [
            Reading(NOW - 2 * SECOND, {"temperature": 42}),
            Reading(NOW - SECOND, {"temperature": 43}),
        ],
        "泵站 7": [Reading(NOW, {"rpm": 900}), Reading(NOW, {"rpm": 910}, clamped=True)],
    }


def test_gateway_metadata_is_ignored_and_all_null_device_is_kept_empty() -> None:
    item = {"ts": NOW, "values": {"a": 1}, "metadata": {"connector": "modbus", "receivedTs": NOW}}
    assert gateway({"A": [item], "B": [{"x": None}]}) == {"A": [Reading(NOW, {"a": 1})], "B": []}


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (
            [{"a": 1}],
            "gateway telemetry must be a JSON object of device name to array, got an array",
        ),
        ({}, "gateway telemetry names no device"),
        ({"": [{"a": 1}]}, 'device "": name must be 1 to 128 characters'),
        ({"d" * 129: [{"a": 1}]}, f'device "{"d" * 64}…": name must be 1 to 128 characters'),
        ({"A\tB": [{"a": 1}]}, 'device "A\\tB": name contains a control character'),
        ({"A": {"a": 1}}, 'device "A": must be an array of telemetry items, got an object'),
        ({"A": []}, 'device "A": empty array'),
        ({"A": [{"a": 1}], "B": [1]}, 'device "B": item 0: must be a JSON object, got a number'),
        (
            {"A": [{"ts": 0, "values": {"a": 1}}]},
            f'device "A": item 0: "ts" 0 is more than 30 days before the server time {NOW}',
        ),
        (
            {"A": [{"ts": NOW, "values": {"a": [1]}}]},
            'device "A": item 0: "values": key "a": nested objects and arrays are not accepted '
            "as values, got an array",
        ),
        ({"A": [{"a": 1}] * 1_001}, 'device "A": array has 1001 items, more than 1000'),
        (
            {f"d{i}": [{"a": 1}] for i in range(1_001)},
            "gateway telemetry names 1001 devices, more than 1000",
        ),
    ],
)
def test_gateway_refusals(value: Any, reason: str) -> None:
    assert gateway_refusal(value) == reason


def test_gateway_128_character_name_is_accepted() -> None:
    assert list(gateway({"d" * 128: [{"a": 1}]})) == ["d" * 128]


# --- properties ------------------------------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()  # also beyond 64 bits
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
    | st.sampled_from(["NaN", "-Infinity", "12.5", "7", str(NOW), "1e5", ""]),
    lambda children: (
        st.lists(children, max_size=5)
        | st.dictionaries(
            st.text(max_size=8) | st.sampled_from(["ts", "values"]), children, max_size=5
        )
    ),
    max_leaves=30,
)


def parse_every_way(raw: bytes) -> None:
    """Each parser on ``raw``: a refusal is fine, any other exception fails the test."""
    for parse in (
        lambda: parse_telemetry(raw, now_ms=NOW),
        lambda: parse_attributes(raw),
        lambda: parse_gateway_telemetry(raw, now_ms=NOW),
    ):
        try:
            parse()
        except PayloadError:
            pass


@PROPERTY
@given(json_values)
def test_arbitrary_json_raises_only_payload_error(value: Any) -> None:
    # The standard library encodes big integers and lone surrogates, which orjson would not.
    parse_every_way(json.dumps(value).encode())


@PROPERTY
@given(st.binary(max_size=64))
def test_arbitrary_bytes_raise_only_payload_error(raw: bytes) -> None:
    parse_every_way(raw)


keys = st.text(st.characters(exclude_categories=["Cc", "Cs"]), min_size=1, max_size=64)
scalars = (
    st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(
        st.characters(exclude_categories=["Cs", "Nd"], exclude_characters="\x00"), max_size=512
    ).filter(lambda text: text.strip("+-").lower() not in {"nan", "inf", "infinity"})
)


@PROPERTY
@given(st.dictionaries(keys, scalars | st.none(), min_size=1, max_size=200))
def test_valid_flat_objects_keep_every_non_null_value(values: dict[str, Any]) -> None:
    # Strings drawn without digits are never cast (nor with U+0000, which attributes refuse),
    # so every value comes back as sent.
    expected = {key: value for key, value in values.items() if value is not None}
    assert parse_attributes(body(values)) == expected
    readings = parse_telemetry(body([{"ts": NOW, "values": values}]), now_ms=NOW)
    assert readings == ([Reading(NOW, expected)] if expected else [])


@PROPERTY
@given(st.integers(min_value=NOW - MAX_AGE // MILLISECOND, max_value=2**53 - 1))
def test_accepted_ts_is_never_beyond_tolerance(ts: int) -> None:
    (reading,) = parse_telemetry(body({"ts": ts, "values": {"a": 1}}), now_ms=NOW)
    tolerance = FUTURE_TOLERANCE // MILLISECOND
    assert reading.ts_ms <= NOW + tolerance
    assert reading.clamped == (ts > NOW + tolerance)
    assert reading.ts_ms == (NOW if reading.clamped else ts)
