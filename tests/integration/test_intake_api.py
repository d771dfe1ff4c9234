"""The intake API against the real broker and database, in this process."""

import asyncio
import contextlib
import socket
import uuid
from datetime import UTC, datetime

import httpx
import orjson
import pytest

from hub.api import create_app
from schemas import topics
from schemas.event import event_id_for
from tests.integration.helpers import end_offsets, read_until

URL = "/api/v1/intake/hotline-12345"


def order(order_no: str | None = None, **overrides):
    return {
        "order_no": order_no or f"WZ-{uuid.uuid4().hex[:12]}",
        "call_time": datetime.now(UTC).isoformat(),
        "content": "小区门口路灯不亮，联系电话13857712345",
        "address": "温州市鹿城区松台街道",
        "longitude": 120.6605,
        "latitude": 28.0166,
        "caller_phone": "13857712345",
        **overrides,
    }


async def test_health_and_readiness(api):
    assert (await api.get("/healthz")).json() == {"status": "ok"}
    ready = await api.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"] == {"kafka": "ok", "postgres": "ok"}


async def test_accepted_order_is_in_kafka_masked_before_the_202(api, keys, prepared):
    body = order()
    response = await api.post(URL, json=body, headers={"X-API-Key": keys["hotline"]})
    assert response.status_code == 202, response.text
    event_id = uuid.UUID(response.json()["event_id"])
    assert event_id == event_id_for("hotline-12345", body["order_no"])

    record = await read_until(prepared, topics.INTAKE_RAW, lambda r: r.key == event_id.bytes)
    envelope = orjson.loads(record.value)
    assert envelope["source"] == "hotline-12345"
    assert envelope["external_id"] == body["order_no"]
    assert envelope["payload"]["caller_phone"] == "*******2345"
    assert "13857712345" not in record.value.decode()
    assert "138****2345" in envelope["payload"]["content"]


async def test_a_repeat_is_a_200_duplicate_and_a_change_is_an_update(api, keys, prepared):
    body = order()
    headers = {"X-API-Key": keys["hotline"]}
    first = await api.post(URL, json=body, headers=headers)
    assert (first.status_code, first.json()["status"]) == (202, "accepted")
    before = await end_offsets(prepared, topics.INTAKE_RAW)
    second = await api.post(URL, json=body, headers=headers)
    assert (second.status_code, second.json()["status"]) == (200, "duplicate")
    assert second.json()["event_id"] == first.json()["event_id"]
    assert await end_offsets(prepared, topics.INTAKE_RAW) == before  # nothing sent again
    changed = await api.post(URL, json={**body, "content": "路灯仍然不亮"}, headers=headers)
    assert (changed.status_code, changed.json()["status"]) == (202, "updated")
    assert changed.json()["event_id"] == first.json()["event_id"]
    assert await end_offsets(prepared, topics.INTAKE_RAW) == before + 1


@pytest.mark.parametrize(
    ("make_request", "status", "reason"),
    [
        (lambda: {"json": {k: v for k, v in order().items() if k != "content"}}, 422, "content"),
        (lambda: {"json": order(latitude="north")}, 422, "latitude"),
        (lambda: {"json": order(call_time="yesterday")}, 422, "call_time"),
        (lambda: {"json": order(content="x" * 4001)}, 422, "content"),
        (lambda: {"content": b'{"order_no": "WZ-1", ', "headers": {}}, 422, "JSON"),
        (lambda: {"json": order(content="长" * 400_000)}, 413, "exceeds"),
        (lambda: {"content": orjson.dumps(order()).decode().encode("gbk")}, 4, "body"),
    ],
    ids=["missing", "wrong-type", "bad-time", "too-long", "malformed-json", "oversized", "gbk"],
)
async def test_bad_input_gets_a_reason_and_nothing_reaches_kafka(
    api, keys, prepared, make_request, status, reason
):
    before = await end_offsets(prepared, topics.INTAKE_RAW)
    kwargs = make_request()
    headers = {"X-API-Key": keys["hotline"], "content-type": "application/json"}
    response = await api.post(URL, headers={**headers, **kwargs.pop("headers", {})}, **kwargs)
    if status == 4:  # any 4xx will do: what matters is a reason and nothing sent
        assert 400 <= response.status_code < 500, response.text
    else:
        assert response.status_code == status, response.text
    assert reason in response.text
    assert await end_offsets(prepared, topics.INTAKE_RAW) == before


async def test_streamed_oversized_body_is_refused(api, keys):
    async def chunks():
        for _ in range(120):
            yield b"x" * 10_000

    response = await api.post(
        URL,
        content=chunks(),
        headers={"X-API-Key": keys["hotline"], "content-type": "application/json"},
    )
    assert response.status_code == 413
    assert "exceeds" in response.json()["detail"]


@pytest.mark.parametrize(
    ("key", "status"),
    [(None, 401), ("hub_not-a-real-key", 401), ("water", 403), ("grid", 403), ("ops", 403)],
)
async def test_only_the_hotline_itself_may_post_hotline_orders(api, keys, key, status):
    headers = {} if key is None else {"X-API-Key": keys.get(key, key)}
    response = await api.post(URL, json=order(), headers=headers)
    assert response.status_code == status, response.text
    assert response.json()["detail"]


async def test_bearer_authorization_works_too(api, keys):
    response = await api.post(
        URL, json=order(), headers={"Authorization": f"Bearer {keys['hotline']}"}
    )
    assert response.status_code == 202


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Gate:
    """A TCP forwarder to the real broker that can be opened later: Kafka 'comes back'."""

    def __init__(self, port: int, target: tuple[str, int]) -> None:
        self.port, self.target = port, target
        self.server: asyncio.Server | None = None

    async def open(self) -> None:
        self.server = await asyncio.start_server(self._pipe, "127.0.0.1", self.port)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)

        async def copy(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(copy(reader, up_writer), copy(up_reader, writer))

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


async def test_kafka_unreachable_gives_503_and_the_api_recovers_when_it_returns(keys, prepared):
    host, port = prepared.bootstrap.split(",")[0].rsplit(":", 1)
    gate = Gate(free_port(), (host, int(port)))
    settings = prepared.model_copy(
        update={"kafka_bootstrap": f"127.0.0.1:{gate.port}", "kafka_send_timeout_s": 2.0}
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app)
        async with httpx.AsyncClient(transport=transport, base_url="http://hub") as client:
            headers = {"X-API-Key": keys["hotline"]}
            refused = await client.post(URL, json=order(), headers=headers)
            assert refused.status_code == 503, refused.text
            assert "event bus unavailable" in refused.json()["detail"]
            not_ready = await client.get("/readyz")
            assert not_ready.status_code == 503
            assert not_ready.json()["checks"]["postgres"] == "ok"
            assert not_ready.json()["checks"]["kafka"] != "ok"

            await gate.open()
            try:
                for _ in range(60):
                    accepted = await client.post(URL, json=order(), headers=headers)
                    if accepted.status_code == 202:
                        break
                    assert accepted.status_code == 503
                    await asyncio.sleep(0.5)
                assert accepted.status_code == 202, "the API did not recover after Kafka returned"
                assert (await client.get("/readyz")).status_code == 200
            finally:
                await gate.close()


async def test_ids_beyond_the_database_range_are_a_422_not_a_500(api, keys):
    # Found by fuzzing: a path id past int64 used to reach PostgreSQL and fail there.
    response = await api.post(
        "/api/v1/admin/dead-letters/99999999999999999999/replay",
        headers={"X-API-Key": keys["ops"]},
    )
    assert response.status_code == 422
