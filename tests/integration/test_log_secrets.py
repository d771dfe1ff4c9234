"""No secret reaches the API's log: a real `hub api` with its access log on is sent API keys
(header, bearer, query), device tokens in the ThingsBoard paths and Open311 api_keys (form and
query), good and bad, and its log file holds none of them, while it does hold every request."""

from __future__ import annotations

import os
import re
import uuid
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import websockets

from hub.auth import create_api_key, generate_key
from hub.settings import Settings
from tests.integration.conftest import start_api
from tests.integration.helpers import register_device

pytestmark = pytest.mark.integration


async def test_keys_and_tokens_never_appear_in_the_api_log(
    prepared: Settings, pool: Any, keys: dict[str, str], tmp_path: Path
) -> None:
    token, unknown_token = f"tok-{uuid.uuid4().hex}", f"tok-{uuid.uuid4().hex}"
    await register_device(pool, token)
    async with pool.acquire() as conn:
        open311 = await create_api_key(conn, role="source", scope="open311")
    unknown_key = generate_key()
    secrets = {"ops key": keys["ops"], "department key": keys["water"], "open311 key": open311,
               "unknown key": unknown_key, "device token": token,
               "unknown token": unknown_token}  # fmt: skip

    env = {**os.environ, "HUB_API_ACCESS_LOG": "true", "HUB_STATE_DIR": str(tmp_path)}
    proc, url = start_api(env)
    try:
        async with httpx.AsyncClient(base_url=url) as client:
            calls = [
                client.get("/api/v1/whoami", headers={"X-API-Key": keys["ops"]}),
                client.get("/api/v1/whoami", headers={"Authorization": f"Bearer {keys['water']}"}),
                client.get("/api/v1/whoami", headers={"X-API-Key": unknown_key}),
                client.get("/api/v1/tickets", params={"api_key": keys["ops"]}),  # not how, but
                client.post(f"/api/v1/{token}/telemetry", content=b'{"water_level_m": 1.1}'),
                client.post(f"/api/v1/{token}/attributes", content=b'{"firmware": "1.0"}'),
                client.post(f"/api/v1/{unknown_token}/telemetry", content=b'{"a": 1}'),
                client.post(f"/api/v1/{token}/telemetry", content=b"not json"),
                client.get(f"/api/v1/{token}/rpc"),  # a ThingsBoard path the hub does not serve
                client.post("/open311/v2/requests.json", data={"api_key": open311}),
                client.post("/open311/v2/requests.json", params={"api_key": open311}),
                client.post("/open311/v2/requests.xml", params={"api_key": unknown_key},
                            data={"api_key": unknown_key}),
                client.get("/open311/v2/services.json", params={"api_key": open311, "x": "1"}),
            ]  # fmt: skip
            answers = [await call for call in calls]
        statuses = [answer.status_code for answer in answers]
        assert statuses == [200, 200, 401, 401, 200, 200, 401, 400, 404, 400, 403, 403, 200]
        ws_url = url.replace("http://", "ws://") + f"/ws/ops?key={keys['ops']}"
        async with websockets.connect(ws_url) as socket:
            await socket.send(orjson.dumps({"type": "hello", "key": keys["ops"]}).decode())
            assert orjson.loads(await socket.recv())["type"] == "welcome"
    finally:
        proc.terminate()
        proc.wait(timeout=30)

    log = (tmp_path / f"api-{env.get('HUB_TOPIC_PREFIX', '')}log").read_text()
    for what, secret in secrets.items():
        assert secret not in log, f"the {what} is in the API's log"
    # The access log was on and logged every request, masked.
    access = re.findall(r'"(?:GET|POST) (\S+) HTTP/1.1" (\d+)', log)
    assert len([path for path, _ in access if path != "/readyz"]) == len(calls)
    assert ("/api/v1/***/telemetry", "200") in access and ("/api/v1/***/rpc", "404") in access
    assert ("/open311/v2/services.json?api_key=***&x=1", "200") in access
    assert "/ws/ops?key=***" in log
