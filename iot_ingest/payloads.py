"""Parse ThingsBoard device API bodies into readings: pure logic, no I/O.

Bodies come from HTTP ``POST /api/v1/{token}/telemetry`` and ``/attributes`` and from the MQTT
topics ``v1/devices/me/telemetry``, ``v1/devices/me/attributes`` and ``v1/gateway/telemetry``.
Each parser takes the raw bytes, decodes them with one ``orjson.loads`` and either returns plain
values or raises `PayloadError`, whose message is the reason to give the client (HTTP 4xx body or
MQTT PUBACK reason string). A refusal refuses the whole body: nothing in it is kept.

Telemetry shapes (as ThingsBoard accepts them)
    ``{"key": value, ...}``
        A reading at the server's receive time (``now_ms``).
    ``{"ts": <epoch ms>, "values": {"key": value, ...}}``
        A timestamped reading. The object holds exactly ``ts`` and ``values``, plus optionally
        ``metadata`` (an object the ThingsBoard SDKs and gateway attach; ignored). An object with
        ``ts``, ``values`` and any other key is refused; one with ``ts`` but no ``values`` is a
        plain reading whose key ``ts`` is a value, as in ThingsBoard.
    ``[item, ...]``
        1 to `MAX_ITEMS` items, each one of the two objects above, mixed freely. The official
        SDK always sends this form.

``ts`` is an integer, a float (truncated to whole milliseconds, as ThingsBoard's ``getAsLong``
does) or a string of ASCII digits (ThingsBoard's ``Long.parseLong``); booleans, null, signs and
other strings are refused.

Timestamp rules, in this order
    * ``0 <= ts < MAX_TS`` (2^53: exact as a double and in JavaScript), else refused.
    * ``ts < now - MAX_AGE`` (30 days) is refused.
    * When a body's latest ``ts`` (a gateway body: each device's) is more than
      ``FUTURE_TOLERANCE`` (60 s) ahead of ``now``, all its timestamped readings are shifted back
      by that lead, so the latest lands on ``now`` and their spacing is kept; they are marked
      ``clamped=True``. Why: the SDK's HTTP client stamps local time as if it were UTC, so
      devices in China send whole batches 8 h ahead; moving each reading to ``now`` would give
      a batch one timestamp, and (device, ts) is what makes a reading unique.

Values
    * Numbers stay numbers; integers must fit in 64 bits (ThingsBoard's ``long``).
    * Numeric strings are cast as ThingsBoard does (``NumberUtils.isParsable``): an optional
      ``-``, ASCII digits and at most one ``.`` that is not last. Without a ``.`` the result is an
      ``int``, with one a ``float``. Strings that would lose precision stay strings, as in
      ThingsBoard: integers beyond 64 bits, fractions of more than 16 digits. Exponents, ``+``,
      spaces and ``1_000`` are not numbers here and stay strings.
    * Booleans stay booleans; other strings stay strings, at most `MAX_STRING_LENGTH` characters.
    * ``null`` skips the key; a reading left without values is dropped, not refused.
    * Refused: NaN and Infinity (also the strings ``"NaN"``, ``"Infinity"``, ``"-Infinity"``,
      ``"inf"`` in any case and sign, and numeric strings that overflow a double), and objects or
      arrays as values (ThingsBoard would store them as JSON; the hub does not take nested junk).
    * Attributes only: strings holding U+0000, which PostgreSQL's jsonb cannot store.

Keys and sizes
    Keys are 1 to `MAX_KEY_LENGTH` characters without control characters (Unicode ``Cc``); an
    object holds at most `MAX_KEYS` keys; an object or an array is never empty, except a whole
    body of ``{}`` (no readings: the SDK's HTTP connection test); an array holds at
    most `MAX_ITEMS` items. A gateway body names 1 to `MAX_DEVICES` devices, each name 1 to
    `MAX_DEVICE_NAME_LENGTH` characters without control characters, each mapped to an array of
    telemetry items. Bodies must be UTF-8 (a leading byte-order mark is skipped).
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, TypeAlias

import orjson

__all__ = [
    "FUTURE_TOLERANCE",
    "MAX_AGE",
    "MAX_DEVICES",
    "MAX_DEVICE_NAME_LENGTH",
    "MAX_ITEMS",
    "MAX_KEYS",
    "MAX_KEY_LENGTH",
    "MAX_STRING_LENGTH",
    "MAX_TS",
    "PayloadError",
    "Reading",
    "Scalar",
    "parse_attributes",
    "parse_gateway_telemetry",
    "parse_telemetry",
]

Scalar: TypeAlias = float | int | bool | str

FUTURE_TOLERANCE = timedelta(seconds=60)
MAX_AGE = timedelta(days=30)
MAX_TS = 2**53
MAX_KEYS = 200
MAX_ITEMS = 1_000
MAX_KEY_LENGTH = 64
MAX_STRING_LENGTH = 512
MAX_DEVICES = 1_000
MAX_DEVICE_NAME_LENGTH = 128

_FUTURE_TOLERANCE_MS = FUTURE_TOLERANCE // timedelta(milliseconds=1)
_MAX_AGE_MS = MAX_AGE // timedelta(milliseconds=1)
_MIN_LONG = -(2**63)
_MAX_LONG = 2**63 - 1
# ThingsBoard keeps a decimal string of more than 16 fraction digits as a string.
_MAX_FRACTION_DIGITS = 16
# Enough digits for any ts below MAX_TS, with room for leading zeros; bounds int() on junk.
_MAX_TS_DIGITS = 20
_NON_FINITE_WORDS = frozenset({"nan", "inf", "infinity"})
_NON_FINITE_WORD_MAX_LENGTH = len("-infinity")
_BOM = b"\xef\xbb\xbf"
_TIMESTAMPED_KEYS = frozenset({"ts", "values", "metadata"})


class PayloadError(ValueError):
    """A refused body; the message is the reason to give the client."""


@dataclass(frozen=True, slots=True)
class Reading:
    """Values measured at one instant (epoch milliseconds); ``clamped`` if ts was in the future."""

    ts_ms: int
    values: dict[str, Scalar]
    clamped: bool = False
    # whether the body gave the time (else it is the receive time); only these are shifted
    timestamped: bool = field(default=False, compare=False, repr=False)


def parse_telemetry(body: bytes, *, now_ms: int) -> list[Reading]:
    """Parse a device telemetry body into readings, in body order.

    Parameters
    ----------
    body : bytes
        The HTTP request body or MQTT payload.
    now_ms : int
        The server's receive time, epoch milliseconds.

    Returns
    -------
    list[Reading]
        One reading per object that kept at least one value.

    Raises
    ------
    PayloadError
        The body is refused; the message says why and where.

    Examples
    --------
    >>> parse_telemetry(b'[{"ts": 1000, "values": {"t": "21.5", "on": true}}]', now_ms=2000)
    [Reading(ts_ms=1000, values={'t': 21.5, 'on': True}, clamped=False)]
    """
    data = _load(body)
    if data == {}:
        return []  # the SDK's HTTP client posts {} to test the connection; ThingsBoard says 200
    if type(data) is dict:
        reading = _reading(data, now_ms)
        return [] if reading is None else _shifted([reading], now_ms)
    if type(data) is list:
        return _readings(data, now_ms)
    raise PayloadError(f"telemetry must be a JSON object or an array of objects, got {_kind(data)}")


def parse_attributes(body: bytes) -> dict[str, Scalar]:
    """Parse a device attributes body: a flat object of key to scalar, null keys skipped.

    Examples
    --------
    >>> parse_attributes(b'{"firmware": "1.2.0", "interval": "30", "gps": false}')
    {'firmware': '1.2.0', 'interval': 30, 'gps': False}
    """
    data = _load(body)
    if type(data) is not dict:
        raise PayloadError(f"attributes must be a JSON object, got {_kind(data)}")
    attributes = _values(data)
    for key, value in attributes.items():
        # Stored as jsonb, which cannot hold U+0000 (telemetry only goes to Kafka).
        if type(value) is str and "\x00" in value:
            raise PayloadError(f"key {_quote(key)}: U+0000 is not accepted in an attribute")
    return attributes


def parse_gateway_telemetry(body: bytes, *, now_ms: int) -> dict[str, list[Reading]]:
    """Parse a gateway telemetry body ``{"device name": [item, ...], ...}`` per device.

    Every named device is in the result, with an empty list if all its values were null.

    Examples
    --------
    >>> parse_gateway_telemetry(b'{"Pump 7": [{"ts": 1000, "values": {"rpm": 900}}]}', now_ms=1000)
    {'Pump 7': [Reading(ts_ms=1000, values={'rpm': 900}, clamped=False)]}
    """
    data = _load(body)
    if type(data) is not dict:
        raise PayloadError(
            f"gateway telemetry must be a JSON object of device name to array, got {_kind(data)}"
        )
    if not data:
        raise PayloadError("gateway telemetry names no device")
    if len(data) > MAX_DEVICES:
        raise PayloadError(f"gateway telemetry names {len(data)} devices, more than {MAX_DEVICES}")
    result: dict[str, list[Reading]] = {}
    for name, items in data.items():
        where = f"device {_quote(name)}"
        if not name or len(name) > MAX_DEVICE_NAME_LENGTH:
            raise PayloadError(f"{where}: name must be 1 to {MAX_DEVICE_NAME_LENGTH} characters")
        if not name.isprintable() and _has_control_character(name):
            raise PayloadError(f"{where}: name contains a control character")
        if type(items) is not list:
            raise PayloadError(f"{where}: must be an array of telemetry items, got {_kind(items)}")
        try:
            result[name] = _readings(items, now_ms)
        except PayloadError as error:
            raise PayloadError(f"{where}: {error}") from None
    return result


def _load(body: bytes) -> Any:
    if body.startswith(_BOM):
        body = body[3:]
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as error:
        try:
            bytes(body).decode()
        except UnicodeDecodeError:
            raise PayloadError("body is not valid UTF-8") from None
        raise PayloadError(f"invalid JSON: {error}") from None


def _readings(items: list[Any], now_ms: int) -> list[Reading]:
    if not items:
        raise PayloadError("empty array")
    if len(items) > MAX_ITEMS:
        raise PayloadError(f"array has {len(items)} items, more than {MAX_ITEMS}")
    readings = []
    for index, item in enumerate(items):
        if type(item) is not dict:
            raise PayloadError(f"item {index}: must be a JSON object, got {_kind(item)}")
        try:
            reading = _reading(item, now_ms)
        except PayloadError as error:
            raise PayloadError(f"item {index}: {error}") from None
        if reading is not None:
            readings.append(reading)
    return _shifted(readings, now_ms)


def _shifted(readings: list[Reading], now_ms: int) -> list[Reading]:
    """Readings of one device whose latest is too far ahead, moved back together (see top).
    Plain readings carry ``now`` exactly and so are never the latest that moves the rest."""
    lead = max((reading.ts_ms for reading in readings), default=now_ms) - now_ms
    if lead <= _FUTURE_TOLERANCE_MS:
        return readings
    return [
        Reading(reading.ts_ms - lead, reading.values, clamped=True) if reading.timestamped
        else reading
        for reading in readings
    ]  # fmt: skip


def _reading(item: dict[str, Any], now_ms: int) -> Reading | None:
    if "ts" in item and "values" in item:
        if len(item) > 2 and not item.keys() <= _TIMESTAMPED_KEYS:
            extra = next(key for key in item if key not in _TIMESTAMPED_KEYS)
            raise PayloadError(
                f'an object with "ts" and "values" may hold only "metadata" besides, '
                f"got key {_quote(extra)}"
            )
        if "metadata" in item and type(item["metadata"]) is not dict:
            raise PayloadError(f'"metadata" must be a JSON object, got {_kind(item["metadata"])}')
        ts_ms, timestamped = _timestamp(item["ts"], now_ms), True
        raw_values = item["values"]
        if type(raw_values) is not dict:
            raise PayloadError(f'"values" must be a JSON object, got {_kind(raw_values)}')
        try:
            values = _values(raw_values)
        except PayloadError as error:
            raise PayloadError(f'"values": {error}') from None
    else:
        values = _values(item)
        ts_ms, timestamped = now_ms, False
    if not values:
        return None
    return Reading(ts_ms, values, timestamped=timestamped)


def _timestamp(raw: Any, now_ms: int) -> int:
    kind = type(raw)
    if kind is int:
        ts: int = raw
    elif kind is float:
        ts = int(raw)
    elif kind is str and 0 < len(raw) <= _MAX_TS_DIGITS and raw.isascii() and raw.isdigit():
        ts = int(raw)
    else:
        raise PayloadError(f'"ts" must be an integer of epoch milliseconds, got {_preview(raw)}')
    if not 0 <= ts < MAX_TS:
        raise PayloadError(f'"ts" {ts} is outside 0 <= ts < 2^53')
    if ts < now_ms - _MAX_AGE_MS:
        in_seconds = now_ms - _MAX_AGE_MS <= ts * 1000 <= now_ms + _FUTURE_TOLERANCE_MS
        hint = " (seconds instead of milliseconds?)" if in_seconds else ""
        raise PayloadError(
            f'"ts" {ts} is more than {MAX_AGE.days} days before the server time {now_ms}{hint}'
        )
    return ts


def _values(raw: dict[str, Any]) -> dict[str, Scalar]:
    if not raw:
        raise PayloadError("empty object")
    if len(raw) > MAX_KEYS:
        raise PayloadError(f"object has {len(raw)} keys, more than {MAX_KEYS}")
    values: dict[str, Scalar] = {}
    for key, value in raw.items():
        if not key or len(key) > MAX_KEY_LENGTH or not key.isprintable():
            _check_key(key)
        kind = type(value)
        if kind is str:
            values[key] = _text_value(key, value)
        elif kind is int:
            if not _MIN_LONG <= value <= _MAX_LONG:
                raise PayloadError(f"key {_quote(key)}: integer outside the 64-bit range")
            values[key] = value
        elif kind is float or kind is bool:
            # orjson refuses NaN and Infinity literals and numbers that overflow a double.
            values[key] = value
        elif value is None:
            continue
        else:
            raise PayloadError(
                f"key {_quote(key)}: nested objects and arrays are not accepted as values, "
                f"got {_kind(value)}"
            )
    return values


def _check_key(key: str) -> None:
    if not key:
        raise PayloadError("empty key")
    if len(key) > MAX_KEY_LENGTH:
        raise PayloadError(f"key {_quote(key)} is longer than {MAX_KEY_LENGTH} characters")
    if _has_control_character(key):
        raise PayloadError(f"key {_quote(key)} contains a control character")


def _text_value(key: str, text: str) -> Scalar:
    if len(text) > MAX_STRING_LENGTH:
        raise PayloadError(f"key {_quote(key)}: string longer than {MAX_STRING_LENGTH} characters")
    digits = text[1:] if text.startswith("-") else text
    if digits.isdigit() and digits.isascii():
        number = int(text)
        return number if _MIN_LONG <= number <= _MAX_LONG else text
    whole, dot, fraction = digits.partition(".")
    if (
        dot
        and fraction.isdigit()
        and (not whole or whole.isdigit())
        and digits.isascii()
        and len(fraction) <= _MAX_FRACTION_DIGITS
    ):
        real = float(text)
        if real - real != 0:
            raise PayloadError(f"key {_quote(key)}: number overflows to Infinity")
        return real
    if len(text) <= _NON_FINITE_WORD_MAX_LENGTH:
        word = text.lower()
        if word[:1] in ("-", "+"):
            word = word[1:]
        if word in _NON_FINITE_WORDS:
            raise PayloadError(f"key {_quote(key)}: NaN and Infinity are not accepted")
    return text


def _has_control_character(text: str) -> bool:
    return any(unicodedata.category(char) == "Cc" for char in text)


def _quote(text: str) -> str:
    """The text as a JSON string literal, cut to the key length limit: safe to echo back."""
    if len(text) > MAX_KEY_LENGTH:
        text = text[:MAX_KEY_LENGTH] + "…"
    return orjson.dumps(text).decode()


def _preview(value: Any) -> str:
    if type(value) is str:
        return _quote(value)
    return orjson.dumps(value).decode()[:MAX_KEY_LENGTH]


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if type(value) is bool:
        return "a boolean"
    if type(value) is dict:
        return "an object"
    if type(value) is list:
        return "an array"
    if type(value) is str:
        return "a string"
    return "a number"
