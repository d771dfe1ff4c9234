"""Reconciliation: does PostgreSQL hold every accepted input exactly once, as the hub promises?

Run after a fault, a replay or a migration (``hub reconcile``); safe in production: read-only,
one REPEATABLE READ snapshot. Each check names what is lost or doubled, with examples:

- every accepted input (an intake receipt) is stored as an event, and in exactly one incident;
- every incident has exactly one ticket, every ticket an incident;
- an incident's report count equals its stored reports (a doubled or lost report shows here);
- every ticket's history is complete: it starts with its dispatch, each change starts from the
  status the previous one left, and the last leaves the ticket's current status;
- every ticket change has been announced (the outbox is drained);
- SLA due times are right: a ticket whose clocks no person moved (no transfer, rejection,
  reopening or pause) is due exactly when its policy and calendar say, from its creation.

Inputs younger than ``settle`` are still in flight and not counted against the hub.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from dispatch.rulebook import load_rulebook, policy_label

SAMPLES = 10
# A ticket's clocks start at the worker's clock, its created_at is the database's; they differ
# by the length of the transaction.
SLA_TOLERANCE = timedelta(seconds=5)
# Actions by which people move a ticket's clocks (they are recomputed from then on).
CLOCK_MOVES = ("transfer", "reject", "reopen", "request-info", "provide-info")


@dataclass
class Check:
    name: str
    failed: int = 0
    checked: int = 0
    examples: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.failed == 0

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "ok": self.ok, "checked": self.checked,
                "failed": self.failed, "examples": self.examples}  # fmt: skip


@dataclass
class Report:
    checks: list[Check]
    counts: dict[str, int]

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks)

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "counts": self.counts,
                "checks": [check.as_dict() for check in self.checks]}  # fmt: skip

    def lines(self) -> list[str]:
        out = [f"{name}: {count}" for name, count in self.counts.items()]
        for check in self.checks:
            state = "ok" if check.ok else f"FAILED {check.failed}"
            out.append(f"[{state:>10}] {check.name} ({check.checked} checked)")
            out += [f"             {example}" for example in check.examples]
        out.append("reconciled: nothing lost, nothing doubled" if self.ok else "NOT reconciled")
        return out


# Each query: (checked, failed, examples) for inputs older than $1.
CHECKS: dict[str, str] = {
    "every accepted input is stored as an event": """
        SELECT count(*) AS checked, count(*) FILTER (WHERE e.event_id IS NULL) AS failed,
               (array_agg(r.source || '/' || r.external_id) FILTER (WHERE e.event_id IS NULL))
                   [1:$2] AS examples
        FROM intake_receipts r LEFT JOIN events e ON e.event_id = r.event_id
        WHERE r.last_received_at < $1""",
    "every event is in exactly one incident": """
        SELECT count(*) AS checked, count(*) FILTER (WHERE members <> 1) AS failed,
               (array_agg(event_id::text || ' in ' || members || ' incidents')
                   FILTER (WHERE members <> 1))[1:$2] AS examples
        FROM (SELECT e.event_id, count(m.incident_id) AS members
              FROM events e LEFT JOIN incident_members m ON m.event_id = e.event_id
              WHERE e.stored_at < $1 GROUP BY e.event_id) per_event""",
    "every incident has exactly one ticket": """
        SELECT count(*) AS checked, count(*) FILTER (WHERE tickets <> 1) AS failed,
               (array_agg(incident_id::text || ' has ' || tickets || ' tickets')
                   FILTER (WHERE tickets <> 1))[1:$2] AS examples
        FROM (SELECT i.incident_id, count(t.ticket_id) AS tickets
              FROM incidents i LEFT JOIN tickets t ON t.incident_id = i.incident_id
              WHERE i.updated_at < $1 GROUP BY i.incident_id) per_incident""",
    "every ticket belongs to an incident": """
        SELECT count(*) AS checked,
               count(*) FILTER (WHERE i.incident_id IS NULL) AS failed,
               (array_agg(t.ticket_id::text) FILTER (WHERE i.incident_id IS NULL))[1:$2]
                   AS examples
        FROM tickets t LEFT JOIN incidents i ON i.incident_id = t.incident_id
        WHERE t.created_at < $1""",
    "every incident counts each of its reports once": """
        SELECT count(*) AS checked, count(*) FILTER (WHERE reports <> members) AS failed,
               (array_agg(incident_id::text || ': ' || reports || ' counted, ' || members
                          || ' stored') FILTER (WHERE reports <> members))[1:$2] AS examples
        FROM (SELECT i.incident_id, i.reports, count(m.event_id) AS members
              FROM incidents i LEFT JOIN incident_members m ON m.incident_id = i.incident_id
              WHERE i.updated_at < $1 GROUP BY i.incident_id, i.reports) per_incident""",
    "every ticket's history is complete": """
        WITH steps AS (
            SELECT h.ticket_id, h.id, h.action, h.from_status, h.to_status,
                   lag(h.to_status) OVER w AS before, row_number() OVER w AS n,
                   row_number() OVER (PARTITION BY h.ticket_id ORDER BY h.id DESC) AS from_end
            FROM ticket_history h JOIN tickets t ON t.ticket_id = h.ticket_id
            WHERE t.updated_at < $1
            WINDOW w AS (PARTITION BY h.ticket_id ORDER BY h.id)
        ), broken AS (
            SELECT s.ticket_id, min(CASE
                WHEN s.n = 1 AND (s.action <> 'dispatch' OR s.to_status <> 'dispatched')
                    THEN 'does not start with its dispatch'
                WHEN s.n > 1 AND s.from_status IS DISTINCT FROM s.before
                    THEN 'change ' || s.id || ' starts from ' || coalesce(s.from_status, 'nothing')
                         || ', not ' || s.before
                WHEN s.from_end = 1 AND s.to_status <> t.status
                    THEN 'ends ' || s.to_status || ' but the ticket is ' || t.status
                END) AS why
            FROM steps s JOIN tickets t ON t.ticket_id = s.ticket_id
            GROUP BY s.ticket_id
        )
        SELECT (SELECT count(*) FROM tickets WHERE updated_at < $1) AS checked,
               count(*) FILTER (WHERE why IS NOT NULL) + (SELECT count(*) FROM tickets t
                   WHERE t.updated_at < $1 AND NOT EXISTS
                       (SELECT 1 FROM ticket_history h WHERE h.ticket_id = t.ticket_id))
                   AS failed,
               (array_agg(ticket_id::text || ' ' || why) FILTER (WHERE why IS NOT NULL))[1:$2]
                   AS examples
        FROM broken""",
    "every ticket change is announced": """
        SELECT (SELECT count(*) FROM ticket_history WHERE at < $1) AS checked,
               count(*) AS failed,
               (array_agg('outbox ' || id || ' (' || topic || ') waiting since ' || created_at))
                   [1:$2] AS examples
        FROM outbox WHERE created_at < $1""",
}

COUNTS = """
SELECT (SELECT count(*) FROM intake_receipts) AS accepted_inputs,
       (SELECT count(*) FROM events) AS events,
       (SELECT count(*) FROM incidents) AS incidents,
       (SELECT count(*) FROM tickets) AS tickets,
       (SELECT count(*) FROM ticket_history) AS ticket_changes,
       (SELECT count(*) FROM dead_letters) AS dead_letters
"""

UNMOVED_CLOCKS = """
SELECT t.ticket_id, t.sla_policy, t.created_at, t.resolve_due_at
FROM tickets t
WHERE t.created_at < $1 AND t.sla_policy IS NOT NULL AND t.resolve_due_at IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM ticket_history h
                  WHERE h.ticket_id = t.ticket_id AND h.action = ANY($2::text[]))
"""


async def reconcile(conn: Any, pack_dir: Path, *, now: datetime, settle: timedelta) -> Report:
    """Every check, on one snapshot of the database, for what is older than ``now - settle``."""
    before = now - settle
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        counts = dict(await conn.fetchrow(COUNTS))
        checks = []
        for name, query in CHECKS.items():
            row = await conn.fetchrow(query, before, SAMPLES)
            checks.append(Check(name, row["failed"], row["checked"], list(row["examples"] or [])))
        checks.append(await _sla_check(conn, pack_dir, before))
    return Report(checks, counts)


async def _sla_check(conn: Any, pack_dir: Path, before: datetime) -> Check:
    book = await load_rulebook(conn, pack_dir)
    policies = {policy_label(policy): policy for policy in book.policies}
    check = Check("SLA due times follow the policy and calendar")
    for row in await conn.fetch(UNMOVED_CLOCKS, before, list(CLOCK_MOVES)):
        check.checked += 1
        policy = policies.get(row["sla_policy"])
        if policy is None:
            why = f"names policy {row['sla_policy']} which no longer exists"
        else:
            due = book.deadlines(policy, row["created_at"]).resolve_due_at
            if abs(due - row["resolve_due_at"]) <= SLA_TOLERANCE:
                continue
            why = f"due {row['resolve_due_at'].isoformat()}, policy says {due.isoformat()}"
        check.failed += 1
        if len(check.examples) < SAMPLES:
            check.examples.append(f"{row['ticket_id']} {why}")
    return check
