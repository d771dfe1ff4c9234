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


@pytest.mark.parametrize(
    ("body", "depth"),
    [(b"", 0), (b"1", 0), (b"[]", 1), (b'{"a": [1, {"b": "[[[["}]}', 3),
     (b'["\\"[[[", "\\\\", [[]]]', 3),  # escaped quotes and backslashes inside strings
     (b'["unterminated [[[[', 1), (b"[" * 10_000 + b"]" * 10_000, 10_000),
     ('[[["x"]]]'.encode("utf-16"), 3)],
)  # fmt: skip
def test_json_depth(body, depth):
    from hub.limits import json_depth

    assert json_depth(body) == depth


def test_json_depth_is_linear_on_hostile_strings():
    import time

    from hub.limits import json_depth

    started = time.monotonic()
    assert json_depth(b"[" + b'"\\"' * 400_000) == 1  # a million bytes of escaped quotes
    assert json_depth(b'["' + b'\\"' * 500_000 + b"\\") == 1
    assert time.monotonic() - started < 1


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [(b"[" * 9 + b"]" * 9, "application/json", 200),
     (b"[" * 10 + b"]" * 10, "application/json", 200),
     (b"[" * 11 + b"]" * 11, "application/json", 400),
     (b"[" * 11 + b"]" * 11, "application/geo+json; charset=utf-8", 400),
     (b"[" * 11 + b"]" * 11, None, 400),  # ThingsBoard devices often send no type
     (b"[" * 11 + b"]" * 11, "text/csv", 200),  # not JSON: not its business
     (b"[" * 10_000, "application/json", 400)],
)  # fmt: skip
async def test_deep_json_is_refused_with_the_reason(body, content_type, status):
    from hub.limits import RefuseDeepJson

    app = RefuseDeepJson(echo_length, max_depth=10)
    headers = {"content-type": content_type} if content_type else {}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as client:
        response = await client.post("/", content=body, headers=headers)
    assert response.status_code == status
    if status == 200:
        assert response.text == str(len(body))  # the body reaches the app whole
    else:
        assert "nested" in response.json()["detail"] and "at most 10" in response.json()["detail"]


async def test_a_streamed_oversized_json_body_is_413_not_500():
    from hub.limits import RefuseDeepJson

    app = BodySizeLimit(RefuseDeepJson(echo_length, max_depth=10), max_bytes=1024)

    async def chunks():
        for _ in range(4):
            yield b"x" * 512

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as client:
        response = await client.post("/", content=chunks(),
                                     headers={"content-type": "application/json"})  # fmt: skip
    assert response.status_code == 413
