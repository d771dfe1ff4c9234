import httpx
import pytest
from pydantic import ValidationError

from hub.limits import BodySizeLimit
from hub.migrate import load_migrations
from hub.settings import Settings
from hub.sql import load_queries


def test_production_refuses_local_defaults():
    with pytest.raises(ValidationError, match="HUB_DATABASE_URL"):
        Settings(env="production", kafka_bootstrap=None, database_url=None)
    ok = Settings(env="production", kafka_bootstrap="k:9092", database_url="postgresql://x/y")
    assert ok.dsn == "postgresql://x/y"


def test_topic_prefix_applies_to_every_topic():
    assert Settings(topic_prefix="t1.").topic("intake.raw") == "t1.intake.raw"


def test_sql_loader_splits_named_queries(tmp_path):
    path = tmp_path / "q.sql"
    path.write_text("-- name: one\nSELECT 1\n\n-- name: two\n-- a comment\nSELECT 2\n")
    queries = load_queries(path)
    assert queries["one"] == "SELECT 1"
    assert queries["two"].endswith("SELECT 2")


def test_migrations_are_ordered_and_checksummed():
    migrations = load_migrations()
    assert [m.version for m in migrations] == sorted(m.version for m in migrations)
    assert migrations[0].version == "0001_foundation"
    assert len(migrations[0].checksum) == 64


async def echo_length(scope, receive, send):
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": str(len(body)).encode()})


@pytest.mark.parametrize(("size", "status"), [(1024, 200), (1025, 413)])
async def test_body_size_limit(size, status):
    app = BodySizeLimit(echo_length, max_bytes=1024)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as client:
        response = await client.post("/", content=b"x" * size)
    assert response.status_code == status
    if status == 413:
        assert "exceeds 1024 bytes" in response.json()["detail"]


@pytest.mark.parametrize(
    ("url", "status"),
    [("/a?x=1", 200), ("/a?x=%00", 400), ("/a%00b", 400), ("/a?x=%2500", 200)],
)
async def test_nul_in_the_url_is_refused(url, status):
    from hub.limits import RefuseNulInUrl

    app = RefuseNulInUrl(echo_length)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as client:
        response = await client.get(url)
    assert response.status_code == status
