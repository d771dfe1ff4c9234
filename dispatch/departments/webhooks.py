"""Signed webhooks to departments' own systems, with retries.

Each ticket change of a department's ticket is queued (by the ticket_history trigger, in the
change's own transaction) and POSTed as the `tickets.changes` record. The receiver checks

    X-Hub-Signature-256: sha256=<hex HMAC-SHA256(secret, X-Hub-Timestamp + "." + body)>

and may refuse old timestamps (replays). A delivery is claimed for a lease before the request so
that two workers never send it at once; a failure (timeout, refused, non-2xx) is retried with
exponential backoff, and given up after MAX_ATTEMPTS. Delivery is at least once and, across
retries, not in order: deduplicate and order on ``X-Hub-Delivery`` (the change id).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
from datetime import datetime, timedelta
from typing import Any

import httpx

MAX_ATTEMPTS = 12
LEASE = timedelta(seconds=60)
TIMEOUT_S = 5.0


def new_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


def sign(secret: str, timestamp: str, body: bytes) -> str:
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + digest.hexdigest()


def backoff(attempts: int) -> timedelta:
    """2 s, 4 s, 8 s, … at most an hour: about two and a half hours over all attempts."""
    return timedelta(seconds=min(2**attempts, 3600))


async def deliver_due(
    pool: Any, client: httpx.AsyncClient, *, now: datetime, limit: int = 50
) -> int:
    """Send the deliveries due at ``now``, concurrently; return how many were tried."""
    claimed = await pool.fetch(
        """UPDATE webhook_deliveries d SET attempts = d.attempts + 1, next_attempt_at = $2
           FROM department_webhooks w
           WHERE d.id IN (SELECT q.id FROM webhook_deliveries q
                          JOIN department_webhooks e USING (department_code)
                          WHERE q.delivered_at IS NULL AND q.failed_at IS NULL
                            AND q.next_attempt_at <= $1 AND e.enabled
                          ORDER BY q.next_attempt_at LIMIT $3 FOR UPDATE OF q SKIP LOCKED)
             AND w.department_code = d.department_code
           RETURNING d.id, d.change_id, d.url, d.body, d.attempts, w.secret""",
        now,
        now + LEASE,
        limit,
    )
    results = await asyncio.gather(*[_send(client, row, now) for row in claimed])
    await pool.executemany(
        """UPDATE webhook_deliveries SET
               delivered_at = CASE WHEN $2 THEN now() END,
               failed_at = CASE WHEN NOT $2 AND attempts >= $5 THEN now() END,
               next_attempt_at = $3, last_status = $4, last_error = $6
           WHERE id = $1""",
        [
            (row["id"], ok, now + backoff(row["attempts"]), status, MAX_ATTEMPTS, error)
            for row, (ok, status, error) in zip(claimed, results, strict=True)
        ],
    )
    return len(claimed)


async def _send(client: httpx.AsyncClient, row: Any, now: datetime) -> tuple[bool, int | None, str]:
    body = bytes(row["body"])
    timestamp = str(int(now.timestamp()))
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "city-ops-hub-webhooks/1",
        "X-Hub-Event": "ticket.change",
        "X-Hub-Delivery": str(row["change_id"]),
        "X-Hub-Timestamp": timestamp,
        "X-Hub-Signature-256": sign(row["secret"], timestamp, body),
    }
    try:
        response = await client.post(row["url"], content=body, headers=headers)
    except httpx.HTTPError as exc:
        return False, None, f"{type(exc).__name__}: {exc}"[:500]
    ok = 200 <= response.status_code < 300
    return ok, response.status_code, "" if ok else f"HTTP {response.status_code}"


def webhook_client() -> httpx.AsyncClient:
    # No redirects: a department's endpoint answers itself, it does not send the hub elsewhere.
    return httpx.AsyncClient(timeout=TIMEOUT_S, follow_redirects=False)
