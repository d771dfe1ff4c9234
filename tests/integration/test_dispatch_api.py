"""The departments' API and dispatch against real PostgreSQL (and, for timers and the outbox, the
real worker and Kafka): routing and re-routing, transfer, pauses, reopen and merge, SLA due
times on the working calendar, breaches and escalation, the authorisation matrix, rule admin."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from dispatch.rulebook import Rulebook, load_rulebook
from dispatch.tickets.service import store_incident_changes
from hub.auth import create_api_key
from hub.settings import Settings
from schemas import topics
from schemas.ticket import TicketChangeV1
from tests.integration.helpers import eventually, incident_change, open_ticket, read_until

pytestmark = pytest.mark.integration
CHINA = ZoneInfo("Asia/Shanghai")
LUCHENG_URBAN = "urban-management-330302"
TRIAGE = "city-dispatch-centre"


@pytest.fixture(scope="module")
async def book(pool: Any, prepared: Settings) -> Rulebook:
    async with pool.acquire() as conn:
        return await load_rulebook(conn, prepared.pack_dir)


@pytest.fixture(scope="module")
async def city_urban_key(pool: Any) -> str:
    async with pool.acquire() as conn:
        return await create_api_key(conn, role="department", scope="urban-management")


def as_(key: str) -> dict[str, str]:
    return {"X-API-Key": key}


async def new_ticket(pool: Any, book: Rulebook, *, now: datetime | None = None, **facts: Any):
    change = incident_change(**{"category": "streetlight", **facts})
    return await open_ticket(pool, book, change, now=now or datetime.now(UTC))


async def do(
    api: httpx.AsyncClient, key: str, ticket_id: Any, action: str, **body: Any
) -> httpx.Response:
    if "version" not in body:
        current = await api.get(f"/api/v1/tickets/{ticket_id}", headers=as_(key))
        body["version"] = current.json()["version"]
    return await api.post(f"/api/v1/tickets/{ticket_id}/{action}", headers=as_(key), json=body)


async def test_a_rejected_ticket_is_routed_past_every_department_that_rejected_it(
    api: httpx.AsyncClient, pool: Any, book: Rulebook, keys: dict[str, str], city_urban_key: str
) -> None:
    # Dispatched two weeks ago: its first accept clock ran out long since.
    ticket_id = await new_ticket(pool, book, now=datetime.now(UTC) - timedelta(days=14))
    first = (await api.get(f"/api/v1/tickets/{ticket_id}", headers=as_(keys["lucheng"]))).json()
    assert first["department_code"] == LUCHENG_URBAN

    rejected = await do(api, keys["lucheng"], ticket_id, "reject", note="路灯归城投公司管")
    assert rejected.status_code == 200, rejected.text
    # The rejecting department hears where it went, but may no longer read it.
    assert rejected.json()["department_code"] == "urban-management"
    assert rejected.json()["ticket"] is None
    second = (await api.get(f"/api/v1/tickets/{ticket_id}", headers=as_(keys["ops"]))).json()
    # The next rule for streetlights: the city-wide urban-management bureau.
    assert second["department_code"] == "urban-management"
    assert second["status"] == "dispatched" and second["rejected_by"] == [LUCHENG_URBAN]
    assert "rejected by urban-management-330302" in second["routing_reason"]
    assert second["history"][-1]["details"] == {
        "rejected_by": LUCHENG_URBAN,
        "rerouted_to": "urban-management",
    }
    # The rejecting department has lost it; the new one has it, with its own time to accept.
    gone = await api.get(f"/api/v1/tickets/{ticket_id}", headers=as_(keys["lucheng"]))
    assert gone.status_code == 403
    assert datetime.fromisoformat(second["accept_due_at"]) > datetime.now(UTC)

    again = await do(api, city_urban_key, ticket_id, "reject", note="不属于本局职责")
    assert again.status_code == 200, again.text
    third = (await api.get(f"/api/v1/tickets/{ticket_id}", headers=as_(keys["ops"]))).json()
    assert third["department_code"] == TRIAGE and "no rule" in third["routing_reason"]
    assert third["rejected_by"] == [LUCHENG_URBAN, "urban-management"]
    # The triage queue cannot reject: it transfers.
    refused = await do(api, keys["triage"], ticket_id, "reject", note="x")
    assert refused.status_code == 409, refused.text
    moved = await do(
        api, keys["triage"], ticket_id, "transfer", to_department="water", note="供水设施"
    )
    assert moved.status_code == 200 and moved.json()["department_code"] == "water"
    final = (await api.get(f"/api/v1/tickets/{ticket_id}", headers=as_(keys["ops"]))).json()
    actions = [h["action"] for h in final["history"]]
    assert actions == ["dispatch", "reject", "reject", "transfer"]


async def test_transfer_hands_the_ticket_over_and_validates_the_target(
    api: httpx.AsyncClient, pool: Any, book: Rulebook, keys: dict[str, str]
) -> None:
    ticket_id = await new_ticket(pool, book)
    unknown = await do(api, keys["lucheng"], ticket_id, "transfer", to_department="nope", note="x")
    assert unknown.status_code == 400 and "known department" in unknown.text
    same = await do(api, keys["lucheng"], ticket_id, "transfer", to_department=LUCHENG_URBAN,
                    note="x")  # fmt: skip
    assert same.status_code == 400
    moved = await do(api, keys["lucheng"], ticket_id, "transfer", to_department="water",
                     note="是供水管道问题")  # fmt: skip
    assert moved.status_code == 200, moved.text
    final = (await api.get(f"/api/v1/tickets/{ticket_id}", headers=as_(keys["water"]))).json()
    assert final["history"][-1]["details"] == {
        "transferred_from": LUCHENG_URBAN,
        "transferred_to": "water",
    }
    assert (await do(api, keys["lucheng"], ticket_id, "accept", version=2)).status_code == 403
    assert (await do(api, keys["water"], ticket_id, "accept")).status_code == 200


async def test_due_times_follow_the_working_calendar_across_national_day(
    api: httpx.AsyncClient, pool: Any, book: Rulebook, keys: dict[str, str]
) -> None:
    """A normal streetlight report on 30 Sep 2026 at 10:00: accept within 2 working hours,
    resolve within 3 working days. 1–7 Oct are holidays; 8, 9 Oct and Saturday 10 Oct (调休)
    are working days, so it is due at the end of 10 Oct."""
    created = datetime(2026, 9, 30, 10, 0, tzinfo=CHINA)
    ticket_id = await new_ticket(pool, book, now=created, priority="normal")
    ticket = (await api.get(f"/api/v1/tickets/{ticket_id}", headers=as_(keys["ops"]))).json()
    assert ticket["sla_policy"] == "streetlight/normal" and ticket["sla_calendar"] == "working"
    assert datetime.fromisoformat(ticket["accept_due_at"]) == datetime(
        2026, 9, 30, 12, 0, tzinfo=CHINA
    )
    assert datetime.fromisoformat(ticket["resolve_due_at"]) == datetime(
        2026, 10, 10, 17, 30, tzinfo=CHINA
    )


async def test_returning_for_information_pauses_the_clock(
    api: httpx.AsyncClient, pool: Any, book: Rulebook, keys: dict[str, str]
) -> None:
    # manhole-cover, high: round the clock, so the pause extends the due time by its length.
    ticket_id = await new_ticket(pool, book, category="manhole-cover", priority="high")
    await do(api, keys["lucheng"], ticket_id, "accept")
    before = (await do(api, keys["lucheng"], ticket_id, "start")).json()["ticket"]
    paused = await do(api, keys["lucheng"], ticket_id, "request-info", note="请补充具体位置")
    assert paused.status_code == 200 and paused.json()["status"] == "returned"
    assert paused.json()["ticket"]["paused_at"] is not None
    timer = await pool.fetchval("SELECT next_timer_at FROM tickets WHERE ticket_id = $1", ticket_id)
    assert timer is None  # no clock runs while waiting
    async with pool.acquire() as conn:  # the wait lasted two hours
        await conn.execute(
            "UPDATE tickets SET paused_at = paused_at - interval '2 hours' WHERE ticket_id = $1",
            ticket_id,
        )
    resumed = await do(api, keys["ops"], ticket_id, "provide-info", note="市民补充：五马街口")
    assert resumed.status_code == 200, resumed.text
    after = resumed.json()["ticket"]
    assert after["status"] == "in_progress" and after["paused_at"] is None
    moved = datetime.fromisoformat(after["resolve_due_at"]) - datetime.fromisoformat(
        before["resolve_due_at"]
    )
    assert timedelta(hours=2) <= moved < timedelta(hours=2, seconds=30)
    assert after["history"][-1]["details"]["paused_working_seconds"] >= 7200


async def test_reopen_gives_a_fresh_clock_and_merge_closes_a_duplicate(
    api: httpx.AsyncClient, pool: Any, book: Rulebook, keys: dict[str, str]
) -> None:
    old = datetime.now(UTC) - timedelta(days=20)
    ticket_id = await new_ticket(pool, book, now=old)
    for key, action in [("lucheng", "accept"), ("lucheng", "resolve"), ("ops", "close")]:
        assert (await do(api, keys[key], ticket_id, action)).status_code == 200
    reopened = await do(api, keys["ops"], ticket_id, "reopen", note="市民反映路灯仍不亮")
    assert reopened.status_code == 200, reopened.text
    body = reopened.json()["ticket"]
    assert body["status"] == "in_progress" and body["reopen_count"] == 1
    assert body["resolved_at"] is None and body["closed_at"] is None
    assert datetime.fromisoformat(body["resolve_due_at"]) > datetime.now(UTC)

    duplicate = await new_ticket(pool, book)
    merged = await do(api, keys["ops"], duplicate, "merge", into_ticket=str(ticket_id),
                      note="同一路灯")  # fmt: skip
    assert merged.status_code == 200 and merged.json()["status"] == "merged"
    assert merged.json()["ticket"]["merged_into"] == str(ticket_id)
    into_itself = await do(api, keys["ops"], ticket_id, "merge", into_ticket=str(ticket_id),
                           note="x")  # fmt: skip
    assert into_itself.status_code == 400
    into_merged = await do(api, keys["ops"], await new_ticket(pool, book), "merge",
                           into_ticket=str(duplicate), note="x")  # fmt: skip
    assert into_merged.status_code == 400


async def test_a_ticket_left_alone_warns_breaches_and_escalates_on_tickets_changes(
    worker: Any, pool: Any, book: Rulebook, prepared: Settings
) -> None:
    """Dispatched two days ago and never touched: the worker's timer fires every mark once,
    escalates to the department's supervisor and then to the city, and announces each."""
    ticket_id = await new_ticket(pool, book, now=datetime.now(UTC) - timedelta(days=2),
                                 category="manhole-cover", priority="high")  # fmt: skip

    async def escalated() -> Any:
        row = await pool.fetchrow(
            "SELECT sla_state, escalation_level, sla_marks, next_timer_at FROM tickets"
            " WHERE ticket_id = $1",
            ticket_id,
        )
        return row if row["escalation_level"] == 2 else None

    row = await eventually(escalated, seconds=60)
    assert row["sla_state"] == "breached" and row["next_timer_at"] is None
    assert sorted(row["sla_marks"]) == sorted(
        ["accept_warning", "accept_breach", "resolve_warning", "resolve_breach", "city_escalation"]
    )
    history = await pool.fetch(
        "SELECT action, note FROM ticket_history WHERE ticket_id = $1 ORDER BY id", ticket_id
    )
    actions = [h["action"] for h in history]
    assert actions == ["dispatch", "sla_warning", "sla_breach", "escalate", "sla_warning",
                       "sla_breach", "escalate"]  # fmt: skip
    assert "分管负责人" in history[3]["note"] and "level 1" in history[3]["note"]
    assert "温州市城市运行管理服务中心" in history[6]["note"] and "level 2" in history[6]["note"]

    record = await read_until(
        prepared,
        topics.TICKETS_CHANGES,
        lambda r: r.key == str(ticket_id).encode() and b"(level 2)" in r.value,
    )
    change = TicketChangeV1.model_validate_json(record.value)
    assert change.action == "escalate" and change.ticket.escalation_level == 2
    assert change.ticket.sla_state == "breached"


async def test_a_department_lists_only_its_own_queue_most_urgent_first(
    api: httpx.AsyncClient, pool: Any, book: Rulebook, keys: dict[str, str]
) -> None:
    mine = [await new_ticket(pool, book) for _ in range(3)]
    theirs = await new_ticket(pool, book, category="waterlogging", priority="high")
    page = await api.get("/api/v1/tickets", headers=as_(keys["lucheng"]), params={"per_page": 200})
    assert page.status_code == 200, page.text
    items = page.json()["items"]
    assert {str(t) for t in mine} <= {i["ticket_id"] for i in items}
    assert str(theirs) not in {i["ticket_id"] for i in items}
    assert {i["department_code"] for i in items} == {LUCHENG_URBAN}
    dues = [i["resolve_due_at"] for i in items if i["resolve_due_at"]]
    assert dues == sorted(dues, key=datetime.fromisoformat)
    other = await api.get(
        "/api/v1/tickets", headers=as_(keys["lucheng"]), params={"department": "water"}
    )
    assert other.status_code == 403
    ops = await api.get(
        "/api/v1/tickets",
        headers=as_(keys["ops"]),
        params={"department": "water", "status": "dispatched", "priority": "high"},
    )
    assert str(theirs) in {i["ticket_id"] for i in ops.json()["items"]}
    assert {i["department_code"] for i in ops.json()["items"]} == {"water"}


ACTIONS = ["accept", "start", "reject", "transfer", "request-info", "provide-info", "comment",
           "resolve", "close", "reopen", "merge"]  # fmt: skip
OPS_ONLY = {"close", "reopen", "merge"}


@pytest.mark.parametrize("caller", ["anonymous", "bad-key", "source", "other-department",
                                    "triage", "own-department", "ops"])  # fmt: skip
async def test_authorisation_matrix(
    api: httpx.AsyncClient, pool: Any, book: Rulebook, keys: dict[str, str], caller: str
) -> None:
    """Every endpoint of a ticket for every kind of caller. Actions carry a stale version, so a
    caller who gets past authorisation hears 409 and nothing changes."""
    ticket_id = await new_ticket(pool, book)
    headers = {
        "anonymous": {},
        "bad-key": as_("hub_" + "x" * 43),
        "source": as_(keys["hotline"]),
        "other-department": as_(keys["water"]),
        "triage": as_(keys["triage"]),
        "own-department": as_(keys["lucheng"]),
        "ops": as_(keys["ops"]),
    }[caller]
    denied = {"anonymous": 401, "bad-key": 401, "source": 403, "other-department": 403,
              "triage": 403}.get(caller)  # fmt: skip

    read = await api.get(f"/api/v1/tickets/{ticket_id}", headers=headers)
    assert read.status_code == (denied or 200), read.text
    listing = await api.get("/api/v1/tickets", headers=headers)
    # Every department may list its own queue.
    listing_expected = {"anonymous": 401, "bad-key": 401, "source": 403}.get(caller, 200)
    assert listing.status_code == listing_expected
    body = {"version": 999, "note": "x", "to_department": "water",
            "into_ticket": str(uuid.uuid4())}  # fmt: skip
    for action in ACTIONS:
        if action in ("transfer",):
            payload = {k: body[k] for k in ("version", "note", "to_department")}
        elif action == "merge":
            payload = {k: body[k] for k in ("version", "note", "into_ticket")}
        else:
            payload = {k: body[k] for k in ("version", "note")}
        response = await api.post(
            f"/api/v1/tickets/{ticket_id}/{action}", headers=headers, json=payload
        )
        if denied:
            expected = denied
        elif caller == "own-department" and action in OPS_ONLY:
            expected = 403
        elif caller == "ops" and action == "reject":
            expected = 403
        else:
            expected = 409  # authorised; the stale version is refused
        assert response.status_code == expected, (caller, action, response.text)
    version = await pool.fetchval("SELECT version FROM tickets WHERE ticket_id = $1", ticket_id)
    assert version == 1


async def test_routing_rules_are_edited_as_versions_and_route_at_once(
    api: httpx.AsyncClient, pool: Any, keys: dict[str, str], prepared: Settings
) -> None:
    ops = as_(keys["ops"])
    current = (await api.get("/api/v1/admin/routing-rules", headers=ops)).json()
    assert current["version"] >= 1 and len(current["rules"]) > 50
    assert (
        await api.get("/api/v1/admin/routing-rules", headers=as_(keys["lucheng"]))
    ).status_code == 403

    facts = {"category": "streetlight", "district_code": "330302", "priority": "normal"}
    before = (await api.post("/api/v1/admin/routing-rules/explain", headers=ops, json=facts)).json()
    assert before["department_code"] == LUCHENG_URBAN

    new_rule = {"position": 1, "name": "测试：鹿城路灯归供电", "categories": ["streetlight"],
                "districts": ["330302"], "department": "power"}  # fmt: skip
    edit = {
        "base_version": current["version"],
        "note": "test",
        "rules": [new_rule, *current["rules"]],
    }
    saved = await api.put("/api/v1/admin/routing-rules", headers=ops, json=edit)
    assert saved.status_code == 200, saved.text
    assert saved.json()["version"] == current["version"] + 1
    try:
        after = await api.post("/api/v1/admin/routing-rules/explain", headers=ops, json=facts)
        assert after.json()["department_code"] == "power" and after.json()["rule_position"] == 1
        assert "测试：鹿城路灯归供电" in after.json()["reason"]
        async with pool.acquire() as conn:
            fresh = await load_rulebook(conn, prepared.pack_dir)
        ticket_id = await new_ticket(pool, fresh)
        row = await pool.fetchrow(
            "SELECT department_code, routing_rule, routing_version FROM tickets"
            " WHERE ticket_id = $1",
            ticket_id,
        )
        assert tuple(row) == ("power", 1, current["version"] + 1)

        stale = await api.put("/api/v1/admin/routing-rules", headers=ops, json=edit)
        assert stale.status_code == 409
        bad = {**edit, "base_version": current["version"] + 1,
               "rules": [{**new_rule, "department": "no-such-department"}]}  # fmt: skip
        refused = await api.put("/api/v1/admin/routing-rules", headers=ops, json=bad)
        assert refused.status_code == 400 and "no-such-department" in refused.text
        versions = (await api.get("/api/v1/admin/routing-rules/versions", headers=ops)).json()
        assert versions[0]["version"] == current["version"] + 1 and versions[0]["note"] == "test"
        old = await api.get(
            f"/api/v1/admin/routing-rules/versions/{current['version']}", headers=ops
        )
        assert old.json()["rules"] == current["rules"]
    finally:
        restore = {"base_version": current["version"] + 1, "note": "restore",
                   "rules": current["rules"]}  # fmt: skip
        restored = await api.put("/api/v1/admin/routing-rules", headers=ops, json=restore)
        assert restored.status_code == 200, restored.text


async def test_an_incident_that_becomes_urgent_tightens_its_tickets_clock(
    api: httpx.AsyncClient, pool: Any, book: Rulebook, keys: dict[str, str]
) -> None:
    """A normal streetlight report (3 working days), then a second report makes the incident
    urgent: the ticket takes the urgent policy (4 hours round the clock) from its creation."""
    created = datetime.now(UTC)
    first = incident_change(category="streetlight", priority="normal", at=created)
    ticket_id = await open_ticket(pool, book, first, now=created)
    second = incident_change(category="streetlight", priority="urgent", text="路灯杆倒了，砸到车")
    joined = first.model_copy(
        update={"change": "attached", "priority": second.priority, "reports": 2,
                "event": second.event}
    )  # fmt: skip
    async with pool.acquire() as conn:
        await store_incident_changes(conn, changes=[joined], book=book, now=datetime.now(UTC))
    ticket = (await api.get(f"/api/v1/tickets/{ticket_id}", headers=as_(keys["ops"]))).json()
    assert ticket["priority"] == "urgent" and ticket["sla_policy"] == "*/urgent"
    due = datetime.fromisoformat(ticket["resolve_due_at"]) - datetime.fromisoformat(
        ticket["created_at"]
    )
    assert timedelta(hours=4) - timedelta(seconds=2) < due <= timedelta(hours=4)
    changed = ticket["history"][-1]
    assert changed["action"] == "priority_changed" and changed["note"] == "priority normal → urgent"


async def test_staff_read_the_departments_directory(
    api: httpx.AsyncClient, keys: dict[str, str]
) -> None:
    listed = await api.get("/api/v1/departments", headers=as_(keys["lucheng"]))
    assert listed.status_code == 200, listed.text
    by_code = {d["code"]: d for d in listed.json()}
    lucheng = by_code[LUCHENG_URBAN]
    assert (lucheng["level"], lucheng["district_code"], lucheng["parent_code"]) == (
        "district",
        "330302",
        "urban-management",
    )
    assert {"handler", "supervisor"} <= {p["role"] for p in lucheng["people"]}
    assert by_code[TRIAGE]["is_triage"]
    assert (await api.get("/api/v1/departments", headers=as_(keys["hotline"]))).status_code == 403


async def test_the_same_incident_twice_is_one_ticket_announced_once(
    pool: Any, book: Rulebook
) -> None:
    """A replay of `incidents` (a worker restarted before committing its offsets) must neither
    open a second ticket nor announce the first one again."""
    change = incident_change(category="garbage", priority="normal")
    first = await open_ticket(pool, book, change, now=datetime.now(UTC))
    again = await open_ticket(pool, book, change, now=datetime.now(UTC) + timedelta(minutes=5))
    assert first == again
    tickets = await pool.fetch(
        "SELECT ticket_id, accept_due_at FROM tickets WHERE incident_id = $1", change.incident_id
    )
    assert len(tickets) == 1
    dispatches = await pool.fetchval(
        "SELECT count(*) FROM ticket_history WHERE ticket_id = $1 AND action = 'dispatch'", first
    )
    assert dispatches == 1


async def test_a_new_report_reopens_a_resolved_ticket_of_its_incident(
    api: httpx.AsyncClient, pool: Any, book: Rulebook, keys: dict[str, str]
) -> None:
    first = incident_change(category="streetlight", priority="normal")
    ticket_id = await open_ticket(pool, book, first, now=datetime.now(UTC))
    for key, action in [("lucheng", "accept"), ("lucheng", "resolve"), ("ops", "close")]:
        assert (await do(api, keys[key], ticket_id, action)).status_code == 200
    again = incident_change(category="streetlight", text="路灯修过了又不亮了")
    joined = first.model_copy(update={"change": "attached", "reports": 2, "event": again.event})
    async with pool.acquire() as conn:
        await store_incident_changes(conn, changes=[joined], book=book, now=datetime.now(UTC))
    ticket = (await api.get(f"/api/v1/tickets/{ticket_id}", headers=as_(keys["lucheng"]))).json()
    assert ticket["status"] == "in_progress" and ticket["reopen_count"] == 1
    assert ticket["closed_at"] is None and ticket["resolved_at"] is None
    assert datetime.fromisoformat(ticket["resolve_due_at"]) > datetime.now(UTC)
    last = ticket["history"][-1]
    assert (last["action"], last["actor"], last["from_status"]) == (
        "reopen",
        "system:correlation",
        "closed",
    )
    # Closed again, then the same report again (a replay): it joined already, so it reopens
    # nothing.
    for key, action in [("lucheng", "resolve"), ("ops", "close")]:
        assert (await do(api, keys[key], ticket_id, action)).status_code == 200
    async with pool.acquire() as conn:
        await store_incident_changes(conn, changes=[joined], book=book, now=datetime.now(UTC))
    assert (
        await pool.fetchval("SELECT reopen_count FROM tickets WHERE ticket_id = $1", ticket_id) == 1
    )
