"""Keys and tokens cannot be guessed at speed (hub/guessing.py): an address that presented 20
unknown API keys, device tokens or Open311 api_keys hears 429 with Retry-After before the next
one is looked up, while other addresses go on; the MQTT gateway refuses such an address's
CONNECT. On an app with the default limit (20 a minute) and a gateway with a quick one, both of
their own: the other tests' apps and gateways run with it lifted (tests/conftest.py)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest
from fastapi import FastAPI

from hub.api import create_app
from hub.auth import generate_key
from hub.bus import EventBus
from hub.settings import Settings
from iot_ingest.mqtt import packets as p
from iot_ingest.mqtt.client import MqttClient, MqttError
from iot_ingest.mqtt.gateway import Gateway
from tests.integration.conftest import free_port
from tests.integration.helpers import register_device

pytestmark = pytest.mark.integration
LIMIT = 20


@pytest.fixture(scope="module")
async def guarded(prepared: Settings) -> AsyncIterator[FastAPI]:
    """The app with the default guessing limit, in this process."""
    settings = prepared.model_copy(update={"auth_max_failures": LIMIT,
                                           "auth_failure_window_s": 60.0})  # fmt: skip
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        yield app


@contextlib.asynccontextmanager
async def caller(app: FastAPI, address: str) -> AsyncIterator[httpx.AsyncClient]:
    """A client calling from ``address`` (what uvicorn would put in the request's client)."""
    transport = httpx.ASGITransport(app, client=(address, 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://hub") as client:
        yield client


def assert_refused_for_guessing(answer: httpx.Response) -> None:
    assert answer.status_code == 429, answer.text
    assert 1 <= int(answer.headers["retry-after"]) <= 60 // LIMIT
    assert "too many failed authentications" in answer.text


async def test_25_wrong_api_keys_get_429_and_another_address_goes_on(
    guarded: FastAPI, keys: dict[str, str]
) -> None:
    async with caller(guarded, "192.0.2.1") as guesser, caller(guarded, "192.0.2.2") as other:
        answers = []
        for n in range(25):
            # Both ways of presenting a key count; every guess is a new key.
            headers = ({"X-API-Key": generate_key()} if n % 2
                       else {"Authorization": f"Bearer {generate_key()}"})  # fmt: skip
            answers.append(await guesser.get("/api/v1/whoami", headers=headers))
        assert [a.status_code for a in answers] == [401] * LIMIT + [429] * 5
        for answer in answers[LIMIT:]:
            assert_refused_for_guessing(answer)
        # Not even a good key is looked up from the guessing address...
        good = {"X-API-Key": keys["ops"]}
        assert_refused_for_guessing(await guesser.get("/api/v1/whoami", headers=good))
        # ...while another address is served as ever.
        served = await other.get("/api/v1/whoami", headers=good)
        assert (served.status_code, served.json()["role"]) == (200, "ops")
        unknown = await other.get("/api/v1/whoami", headers={"X-API-Key": generate_key()})
        assert unknown.status_code == 401


async def test_unknown_device_tokens_count_and_then_even_a_real_one_waits(
    guarded: FastAPI, pool: Any
) -> None:
    token = f"tok-{uuid.uuid4().hex}"
    await register_device(pool, token)
    body = b'{"water_level_m": 1.2}'
    async with caller(guarded, "192.0.2.3") as guesser, caller(guarded, "192.0.2.4") as other:
        codes = [(await guesser.post(f"/api/v1/guess-{n}/telemetry", content=body)).status_code
                 for n in range(LIMIT)]  # fmt: skip
        assert codes == [401] * LIMIT
        assert_refused_for_guessing(await guesser.post("/api/v1/guess-x/attributes", content=body))
        assert_refused_for_guessing(await guesser.post(f"/api/v1/{token}/telemetry", content=body))
        assert (await other.post(f"/api/v1/{token}/telemetry", content=body)).status_code == 200


async def test_open311_api_keys_count_and_the_refusal_is_the_specs_error_list(
    guarded: FastAPI, keys: dict[str, str]
) -> None:
    form = {"service_code": "streetlight", "lat": "28.0166", "long": "120.6605"}
    async with caller(guarded, "192.0.2.5") as guesser:
        for _ in range(LIMIT):
            refused = await guesser.post("/open311/v2/requests.json",
                                         data={**form, "api_key": generate_key()})  # fmt: skip
            assert refused.status_code == 403, refused.text
        as_json = await guesser.post("/open311/v2/requests.json",
                                     data={**form, "api_key": generate_key()})  # fmt: skip
        assert_refused_for_guessing(as_json)
        assert as_json.json()[0]["code"] == 429
        as_xml = await guesser.post("/open311/v2/requests.xml",
                                    data={**form, "api_key": generate_key()})  # fmt: skip
        assert_refused_for_guessing(as_xml)
        assert as_xml.text.startswith("<?xml") and "<code>429</code>" in as_xml.text
        # Reads stay public: no key, nothing to guess.
        assert (await guesser.get("/open311/v2/services.json")).status_code == 200


async def test_keys_and_tokens_share_one_count_per_address(guarded: FastAPI) -> None:
    async with caller(guarded, "192.0.2.6") as guesser:
        for n in range(LIMIT // 2):
            await guesser.get("/api/v1/tickets", headers={"X-API-Key": generate_key()})
            await guesser.post(f"/api/v1/guess-{n}/telemetry", content=b"{}")
        assert_refused_for_guessing(
            await guesser.get("/api/v1/tickets", headers={"X-API-Key": generate_key()})
        )


async def test_what_is_not_a_guess_is_never_counted(guarded: FastAPI, keys: dict[str, str]) -> None:
    """No key at all, and a good key where its role may not go: as often as the caller likes."""
    async with caller(guarded, "192.0.2.7") as honest:
        source = {"X-API-Key": keys["hotline"]}
        for _ in range(2 * LIMIT):
            assert (await honest.get("/api/v1/tickets")).status_code == 401
            assert (await honest.get("/api/v1/tickets", headers=source)).status_code == 403
            assert (await honest.post("/open311/v2/requests.json", data={})).status_code == 403
        ops = {"X-API-Key": keys["ops"]}
        assert (await honest.get("/api/v1/whoami", headers=ops)).status_code == 200


@pytest.fixture
async def guarded_gateway(prepared: Settings, pool: Any) -> AsyncIterator[int]:
    """A `hub gateway` in this process allowing 3 unknown tokens at once, then one per 0.5 s."""
    settings = prepared.model_copy(update={"auth_max_failures": 3,
                                           "auth_failure_window_s": 1.5})  # fmt: skip
    bus = EventBus(settings.bootstrap, send_timeout_s=settings.kafka_send_timeout_s, linger_ms=1)
    await bus.start()
    stop = asyncio.Event()
    port = free_port()
    serving = asyncio.create_task(
        Gateway(settings, pool=pool, bus=bus).serve("127.0.0.1", port, stop=stop)
    )
    try:
        for _ in range(50):
            with contextlib.suppress(OSError):
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.close()
                break
            await asyncio.sleep(0.1)
        yield port
    finally:
        stop.set()
        await serving
        await bus.stop()


@pytest.mark.parametrize(("level", "unknown", "guessing"), [(p.V5, 0x87, 0x97),
                                                            (p.V311, 0x05, 0x05)])  # fmt: skip
async def test_the_gateway_refuses_connects_from_a_guessing_address(
    guarded_gateway: int, pool: Any, level: int, unknown: int, guessing: int
) -> None:
    token = f"tok-{uuid.uuid4().hex}"
    await register_device(pool, token)

    async def connect(username: str) -> int:
        try:
            client = await MqttClient.connect("127.0.0.1", guarded_gateway, username=username,
                                              level=level)  # fmt: skip
        except MqttError as refused:
            return refused.reason_code
        await client.publish("v1/devices/me/telemetry", orjson.dumps({"water_level_m": 1}))
        await client.close()
        return 0

    assert [await connect(f"guess-{n}") for n in range(3)] == [unknown] * 3
    assert await connect("guess-4") == guessing
    assert await connect(token) == guessing  # not even looked up
    await asyncio.sleep(0.6)  # one failure drains
    assert await connect(token) == 0
