"""Open311 GeoReport v2 reads: services from the taxonomy, requests from events and tickets."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from hub.sql import load_queries

Q = load_queries(Path(__file__).with_name("queries.sql"))


def service_summary(row: Any) -> dict[str, Any]:
    return {
        "service_code": row["code"],
        "service_name": row["name"],
        "description": row["description"],
        "metadata": bool(row["attributes"]),
        "type": "realtime",
        "keywords": "",
        "group": row["grp"],
    }


async def list_services(conn: Any) -> list[dict[str, Any]]:
    return [service_summary(row) for row in await conn.fetch(Q["services"])]


async def get_service(conn: Any, *, code: str) -> dict[str, Any] | None:
    row = await conn.fetchrow(Q["service"], code)
    if row is None:
        return None
    attributes = [{"variable": True, **attribute} for attribute in row["attributes"]]
    return {"service_code": row["code"], "attributes": attributes}


def request_document(row: Any) -> dict[str, Any]:
    """One request in the spec's field order; the SLA due time joins ``expected_datetime``."""
    updated = max(t for t in (row["event_updated_at"], row["ticket_updated_at"]) if t)
    return {
        "service_request_id": str(row["event_id"]),
        "status": row["status"],
        "status_notes": row["status_notes"],
        "service_name": row["service_name"],
        "service_code": row["category"],
        "description": row["text"],
        "agency_responsible": row["agency"],
        "service_notice": None,
        "requested_datetime": row["occurred_at"],
        "updated_datetime": updated,
        "expected_datetime": row["expected_at"],
        "address": row["address"],
        "address_id": row["address_id"],
        "zipcode": None,
        "lat": row["lat"],
        "long": row["lon"],
        "media_url": row["media_url"],
    }


def queued_document(row: Any) -> dict[str, Any]:
    return {
        "service_request_id": str(row["event_id"]),
        "status": "open",
        "status_notes": "received, being processed",
        "requested_datetime": row["first_received_at"],
        "updated_datetime": row["first_received_at"],
    }


async def requests_by_id(
    conn: Any, *, ids: Sequence[uuid.UUID], sources: Sequence[str]
) -> list[dict[str, Any]]:
    rows = await conn.fetch(Q["requests_by_id"], list(ids), list(sources))
    found = [request_document(row) for row in rows]
    missing = set(ids) - {row["event_id"] for row in rows}
    if missing:
        found += [queued_document(r) for r in await conn.fetch(Q["queued_requests"], list(missing))]
    return found


async def requests_filtered(
    conn: Any,
    *,
    sources: Sequence[str],
    start: datetime,
    end: datetime,
    service_codes: list[str] | None,
    statuses: list[str] | None,
    limit: int,
) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        Q["requests_filtered"], list(sources), start, end, service_codes, statuses, limit
    )
    return [request_document(row) for row in rows]
