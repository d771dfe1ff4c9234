import subprocess
import sys

import asyncpg
import pytest

from hub.migrate import load_migrations, migrate
from tests.conftest import ORIGINAL_ENV


def hub(*args: str) -> subprocess.CompletedProcess[str]:
    # The developer's own environment: local services unless they pointed elsewhere.
    return subprocess.run(
        [sys.executable, "-m", "hub.cli", *args],
        env=ORIGINAL_ENV,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_infra_up_is_idempotent_and_status_shows_both_answering():
    again = hub("infra", "up")
    assert again.returncode == 0, again.stderr
    assert "kafka:" in again.stdout and "postgres:" in again.stdout
    assert "started\n" not in again.stdout.replace("already running", "")
    status = hub("infra", "status")
    assert status.returncode == 0, status.stdout + status.stderr
    rows = status.stdout.splitlines()
    assert [row.split()[:2] for row in rows] == [["kafka", "answers"], ["postgres", "answers"]]


async def test_migrate_twice_applies_nothing_the_second_time(prepared):
    assert await migrate(prepared.dsn) == []
    conn = await asyncpg.connect(prepared.dsn)
    try:
        versions = await conn.fetch("SELECT version FROM schema_migrations")
    finally:
        await conn.close()
    assert sorted(row["version"] for row in versions) == [m.version for m in load_migrations()]


async def test_an_edited_applied_migration_is_refused(prepared, tmp_path):
    (tmp_path / "0001_foundation.sql").write_text("SELECT 1; -- edited after the fact")
    with pytest.raises(RuntimeError, match="changed after it was applied"):
        await migrate(prepared.dsn, tmp_path)
