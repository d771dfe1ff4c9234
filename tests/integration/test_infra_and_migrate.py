import subprocess
import sys
import uuid

import asyncpg
import pytest

from hub.migrate import load_migrations, migrate
from tests.conftest import ORIGINAL_ENV
from tests.integration.helpers import eventually


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


async def test_tickets_from_before_correlation_get_their_incident(pool):
    """A database upgraded from before 0005 holds tickets without incidents: 0006 gives each the
    incident correlation derives for its report, so a re-sent report meets it, not a conflict."""
    import uuid
    from datetime import UTC, datetime

    from dispatch.tickets.service import ticket_id_for
    from hub.migrate import MIGRATIONS_DIR
    from streams.correlate.engine import incident_id_for

    event_id = uuid.uuid4()
    ticket_id = ticket_id_for(event_id)
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            """INSERT INTO events (event_id, source, external_id, schema_version, occurred_at,
                                   received_at, text, priority, record)
               VALUES ($1, 'hotline-12345', $2, 1, $3, $3, '旧工单', 'normal', '{}')""",
            event_id, f"OLD-{event_id.hex[:8]}", datetime.now(UTC),
        )  # fmt: skip
        await conn.execute(
            """INSERT INTO tickets (ticket_id, event_id, department_code, status, priority,
                                    title, routing_reason)
               VALUES ($1, $2, 'city-dispatch-centre', 'dispatched', 'normal', '旧工单', 'old')""",
            ticket_id, event_id,
        )  # fmt: skip
        await conn.execute((MIGRATIONS_DIR / "0006_backfill_incidents.sql").read_text())
        row = await conn.fetchrow(
            """SELECT t.incident_id, m.incident_id AS member_of FROM tickets t
               JOIN incident_members m ON m.event_id = t.event_id WHERE t.ticket_id = $1""",
            ticket_id,
        )
    assert row["incident_id"] == row["member_of"] == incident_id_for(event_id)


async def test_a_changelog_created_without_compaction_is_made_compacted(prepared):
    """A broker that auto-creates topics may have made a changelog before `hub migrate`."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    from hub.bus import _not_compacted, ensure_topics

    changelog = prepared.topic(f"probe-{uuid.uuid4().hex[:8]}.state")
    admin = AIOKafkaAdminClient(bootstrap_servers=prepared.bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(changelog, 1, 1)])  # default policy: delete
        assert await _not_compacted(admin, [changelog]) == [changelog]
        # Known to every broker, as it would be long before a migration.
        await eventually(lambda: _listed(admin, changelog))
        report = await ensure_topics(prepared.bootstrap, [changelog], partitions=1,
                                     replication=1, compacted=frozenset({changelog}))  # fmt: skip
        assert (report.created, report.made_compacted) == ([], [changelog])
        assert await _not_compacted(admin, [changelog]) == []
        again = await ensure_topics(prepared.bootstrap, [changelog], partitions=1,
                                    replication=1, compacted=frozenset({changelog}))  # fmt: skip
        assert (again.created, again.made_compacted) == ([], [])
    finally:
        await admin.delete_topics([changelog])
        await admin.close()


async def _listed(admin, topic):
    return topic in await admin.list_topics()
