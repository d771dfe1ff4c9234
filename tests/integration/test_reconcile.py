"""Faults under load, then reconciliation (bench/faults.py, dispatch/reconcile.py), on a database
and topics of the test's own: a small run with the worker killed (-9) and the API restarted
loses and doubles nothing; then each kind of damage done to the database by hand is named by
`hub reconcile`'s checks."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from bench.common import isolated_run
from bench.faults import run_faults
from dispatch.reconcile import reconcile

pytestmark = pytest.mark.integration


async def test_faults_lose_nothing_and_reconcile_names_what_was_damaged(
    prepared: Any, tmp_path: Path
) -> None:
    run_id = secrets.token_hex(4)
    async with isolated_run("reconcile", run_id) as settings:
        results = await run_faults(
            settings, _env(), tmp_path, reports=400, rate=40, faults=["worker", "api", "worker"],
            devices=0, seed=3, run_id=run_id, say=lambda line: None,
        )  # fmt: skip
        assert results["reports"]["accepted"] == 400
        assert results["reports"]["retries"] > 0  # the API restart was felt by the sources
        assert results["lost"] == [] and results["doubled"] == []
        assert results["reconcile"]["ok"], results["reconcile"]
        assert results["ok"]

        conn = await asyncpg.connect(settings.dsn)
        try:
            damaged = await _damage(conn)
            report = await reconcile(conn, settings.pack_dir, now=datetime.now(UTC),
                                     settle=timedelta(0))  # fmt: skip
        finally:
            await conn.close()
        command = await asyncio.create_subprocess_exec(  # the CLI, on the damaged database
            sys.executable, "-m", "hub.cli", "reconcile", "--settle", "0", "--json",
            stdout=asyncio.subprocess.PIPE, env=_env(),
        )  # fmt: skip
        out, _ = await command.communicate()
    assert command.returncode == 1
    assert json.loads(out)["ok"] is False
    failed = {check.name: " ".join(check.examples) for check in report.checks if not check.ok}
    assert set(failed) == {check.name for check in report.checks}, failed
    for check, named in damaged.items():
        assert named in failed[check], (check, failed[check])
    assert not report.ok and "NOT reconciled" in report.lines()[-1]


async def _damage(conn: Any) -> dict[str, str]:
    """One kind of damage per check; what each check must name."""
    tickets = await conn.fetch(
        "SELECT ticket_id, incident_id, event_id FROM tickets ORDER BY ticket_id LIMIT 7"
    )
    t = [str(row["ticket_id"]) for row in tickets]
    i = [str(row["incident_id"]) for row in tickets]
    await conn.execute(
        "INSERT INTO intake_receipts (source, external_id, event_id, payload_hash) "
        "VALUES ('hotline-12345', 'NEVER-STORED-1', gen_random_uuid(), 'x')"
    )
    member = await conn.fetchval(
        "DELETE FROM incident_members WHERE incident_id = $1 RETURNING event_id::text",
        tickets[0]["incident_id"],
    )
    for table in ("ticket_history", "sla_timers"):
        await conn.execute(f"DELETE FROM {table} WHERE ticket_id = $1", tickets[1]["ticket_id"])
    await conn.execute("DELETE FROM tickets WHERE ticket_id = $1", tickets[1]["ticket_id"])
    await conn.execute("UPDATE incidents SET reports = reports + 1 WHERE incident_id = $1",
                       tickets[2]["incident_id"])  # fmt: skip
    await conn.execute("UPDATE tickets SET status = 'accepted' WHERE ticket_id = $1",
                       tickets[3]["ticket_id"])  # fmt: skip
    await conn.execute(
        "UPDATE tickets SET resolve_due_at = resolve_due_at + interval '1 hour' "
        "WHERE ticket_id = $1",
        tickets[4]["ticket_id"],
    )
    await conn.execute(
        "INSERT INTO outbox (topic, key, value, created_at) "
        "VALUES ('tickets.changes', '\\x00'::bytea, '\\x00'::bytea, now() - interval '1 minute')"
    )
    await conn.execute("UPDATE tickets SET incident_id = NULL WHERE ticket_id = $1",
                       tickets[5]["ticket_id"])  # fmt: skip
    return {
        "every accepted input is stored as an event": "hotline-12345/NEVER-STORED-1",
        "every event is in exactly one incident": str(member),
        "every incident has exactly one ticket": i[1],
        "every ticket belongs to an incident": t[5],
        "every incident counts each of its reports once": i[2],
        "every ticket's history is complete": t[3],
        "every ticket change is announced": "tickets.changes",
        "SLA due times follow the policy and calendar": t[4],
    }


def _env() -> dict[str, str]:
    return dict(os.environ)  # isolated_run put the run's database and prefix there
