"""Fixtures on the real Kafka and PostgreSQL that `hub infra up` started.

One database and one topic prefix per run (see tests/conftest.py); a real `hub worker` process
for the tests that need the stream.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaProducer

from hub.api import create_app
from hub.auth import create_api_key
from hub.bus import delete_topics_with_prefix
from hub.cli import migrate_all
from hub.db import create_pool
from hub.pack import load_pack
from hub.seed import seed
from hub.settings import Settings, get_settings
from tests.conftest import BASE_DSN, TEST_DATABASE
from tests.integration.helpers import GatewayProcess

pytestmark = pytest.mark.integration


@pytest.fixture(scope="session")
def settings() -> Settings:
    return get_settings()


@pytest.fixture(scope="session")
async def prepared(settings: Settings) -> AsyncIterator[Settings]:
    """A fresh database (migrated, seeded) and fresh topics; both removed afterwards."""
    admin = await asyncpg.connect(BASE_DSN)
    await admin.execute(f'CREATE DATABASE "{TEST_DATABASE}"')
    try:
        await migrate_all(settings)
        conn = await asyncpg.connect(settings.dsn)
        await seed(conn, load_pack(settings.pack_dir))
        await conn.close()
        yield settings
    finally:
        await _delete_topics(settings)
        await admin.execute(f'DROP DATABASE IF EXISTS "{TEST_DATABASE}" WITH (FORCE)')
        await admin.close()


async def _delete_topics(settings: Settings) -> None:
    await delete_topics_with_prefix(settings.bootstrap, settings.topic_prefix)


@pytest.fixture(scope="session")
async def pool(prepared: Settings) -> AsyncIterator[Any]:
    pool = await create_pool(prepared.dsn)
    yield pool
    await pool.close()


@pytest.fixture(scope="session")
async def keys(pool: Any) -> dict[str, str]:
    """One API key for each kind of caller the tests play."""
    async with pool.acquire() as conn:
        return {
            "hotline": await create_api_key(conn, role="source", scope="hotline-12345"),
            "grid": await create_api_key(conn, role="source", scope="grid-governance"),
            "ops": await create_api_key(conn, role="ops"),
            "triage": await create_api_key(conn, role="department", scope="city-dispatch-centre"),
            "water": await create_api_key(conn, role="department", scope="water"),
            # 鹿城区综合行政执法局: where the pack routes urban-management reports in 鹿城
            "lucheng": await create_api_key(
                conn, role="department", scope="urban-management-330302"
            ),
        }


@pytest.fixture(scope="session")
async def api(prepared: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The real app in this process, with its lifespan (real pool, real producer)."""
    app = create_app(prepared)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app)
        async with httpx.AsyncClient(transport=transport, base_url="http://hub") as client:
            yield client


def start_worker(settings: Settings, name: str = "test") -> subprocess.Popen[bytes]:
    """A real `hub worker` process on this run's topics and database, logging to .hub/."""
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    log = open(settings.state_dir / f"{name}-worker-{settings.topic_prefix}log", "wb")
    return subprocess.Popen(
        [sys.executable, "-m", "hub.cli", "worker", "--loglevel", "warn"],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "HUB_STATE_DIR": str(settings.state_dir / f"{name}-worker")},
    )


@pytest.fixture(scope="session")
def worker(prepared: Settings) -> Iterator[subprocess.Popen[bytes]]:
    """A real `hub worker` process on this run's topics and database."""
    proc = start_worker(prepared)
    yield proc
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="session")
async def producer(prepared: Settings) -> AsyncIterator[AIOKafkaProducer]:
    producer = AIOKafkaProducer(bootstrap_servers=prepared.bootstrap, acks="all")
    await producer.start()
    yield producer
    await producer.stop()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="session")
def gateway(prepared: Settings) -> Iterator[GatewayProcess]:
    """A real `hub gateway` (MQTT) process on this run's topics and database."""
    port = free_port()
    prepared.state_dir.mkdir(parents=True, exist_ok=True)
    log_path = prepared.state_dir / f"gateway-{prepared.topic_prefix}log"
    log = open(log_path, "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "hub.cli", "gateway", "--port", str(port), "--loglevel", "warning"],
        env=os.environ, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            assert proc.poll() is None, "hub gateway exited"
            assert time.monotonic() < deadline, "hub gateway did not listen"
            time.sleep(0.2)
    yield GatewayProcess(port, proc, log_path)
    proc.terminate()
    assert proc.wait(timeout=30) == 0, "hub gateway did not stop cleanly"


@pytest.fixture(scope="session")
def gateway_port(gateway: GatewayProcess) -> int:
    return gateway.port


def start_api(env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    """A real `hub api` (uvicorn) process with this environment, once it is ready; its log is
    in the state folder (.hub/api-<topic prefix>log)."""
    port = free_port()
    state_dir = Path(env.get("HUB_STATE_DIR") or get_settings().state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    with open(state_dir / f"api-{env.get('HUB_TOPIC_PREFIX', '')}log", "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "hub.cli", "api", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{url}/readyz").status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        assert proc.poll() is None, "hub api exited"
        assert time.monotonic() < deadline, "hub api did not become ready"
        time.sleep(0.3)


@pytest.fixture(scope="session")
def api_url(prepared: Settings) -> Iterator[str]:
    """A real `hub api` (uvicorn) process on this run's topics and database."""
    proc, url = start_api(dict(os.environ))
    yield url
    proc.terminate()
    proc.wait(timeout=30)
