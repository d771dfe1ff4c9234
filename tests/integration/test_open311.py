"""Open311 GeoReport v2 against the real app, broker, database and worker."""

import uuid
from datetime import UTC, datetime, timedelta
from xml.etree import ElementTree

import pytest

from hub.auth import create_api_key
from tests.integration.helpers import eventually

BASE = "/open311/v2"


@pytest.fixture(scope="module")
async def open311_key(pool):
    async with pool.acquire() as conn:
        return await create_api_key(conn, role="source", scope="open311", label="test-app")


def form(key, **overrides):
    return {
        "api_key": key,
        "service_code": "manhole-cover",
        "lat": "28.0166",
        "long": "120.6605",
        "description": "五马街井盖缺失，联系人电话13857712345",
        "attribute[cover_state]": "missing",
        "email": "citizen@example.com",
        "phone": "13857712345",
        "account_id": "acct-42",
        **overrides,
    }


async def test_discovery_in_json_and_xml(api):
    as_json = (await api.get(f"{BASE}/discovery.json")).json()
    assert as_json["endpoints"][0]["specification"] == "http://wiki.open311.org/GeoReport_v2"
    assert "text/xml" in as_json["endpoints"][0]["formats"]
    as_xml = await api.get(f"{BASE}/discovery.xml")
    assert as_xml.headers["content-type"].startswith("text/xml")
    root = ElementTree.fromstring(as_xml.content)
    assert root.tag == "discovery"
    assert root.find("endpoints/endpoint/formats/format").text == "text/xml"


async def test_services_come_from_the_taxonomy(api):
    services = (await api.get(f"{BASE}/services.json")).json()
    by_code = {s["service_code"]: s for s in services}
    assert by_code["manhole-cover"]["service_name"] == "井盖缺失或破损"
    assert by_code["manhole-cover"]["metadata"] is True
    assert by_code["road-damage"]["metadata"] is False
    assert {"type", "group", "description", "keywords"} <= set(by_code["streetlight"])
    root = ElementTree.fromstring((await api.get(f"{BASE}/services.xml")).content)
    assert root.tag == "services"
    assert len(root.findall("service")) == len(services)


async def test_service_definition_and_unknown_service(api):
    definition = (await api.get(f"{BASE}/services/manhole-cover.json")).json()
    state = next(a for a in definition["attributes"] if a["code"] == "cover_state")
    assert state["required"] is True and state["datatype"] == "singlevaluelist"
    assert {"key": "missing", "name": "缺失"} in state["values"]
    root = ElementTree.fromstring((await api.get(f"{BASE}/services/manhole-cover.xml")).content)
    assert root.tag == "service_definition"
    assert root.find("attributes/attribute/values/value/key") is not None
    missing = await api.get(f"{BASE}/services/no-such-service.json")
    assert missing.status_code == 404
    assert missing.json()[0]["code"] == 404
    missing_xml = await api.get(f"{BASE}/services/no-such-service.xml")
    assert ElementTree.fromstring(missing_xml.content).find("error/code").text == "404"
    assert (await api.get(f"{BASE}/services.html")).status_code == 404


@pytest.mark.parametrize(
    ("overrides", "status", "words"),
    [
        ({"api_key": ""}, 403, "api_key"),
        ({"api_key": "hub_wrong"}, 403, "api_key"),
        ({"service_code": ""}, 400, "service_code"),
        ({"service_code": "nope"}, 404, "not found"),
        ({"lat": "", "long": ""}, 400, "location"),
        ({"long": ""}, 400, "lat and long"),
        ({"lat": "39.9", "long": "116.4"}, 400, "outside"),
        ({"attribute[cover_state]": ""}, 400, "cover_state"),
        ({"attribute[cover_state]": "stolen"}, 400, "must be one of"),
        ({"attribute[colour]": "red"}, 400, "not defined"),
        ({"description": "长" * 4001}, 400, "description"),
        ({"media_url": "not a url"}, 400, "media_url"),
    ],
)
async def test_bad_posts_get_the_spec_error_list(api, open311_key, overrides, status, words):
    response = await api.post(f"{BASE}/requests.json", data=form(open311_key, **overrides))
    assert response.status_code == status, response.text[:500]
    [error] = response.json()
    assert error["code"] == status and words in error["description"]


async def test_a_hotline_key_cannot_post_open311(api, keys):
    response = await api.post(f"{BASE}/requests.json", data=form(keys["hotline"]))
    assert response.status_code == 403


async def test_posted_request_reads_back_with_status_from_its_ticket(
    api, open311_key, worker, pool, keys
):
    posted = await api.post(f"{BASE}/requests.json", data=form(open311_key))
    assert posted.status_code == 201, posted.text[:500]
    [answer] = posted.json()
    request_id = answer["service_request_id"]
    assert answer["account_id"] == "acct-42" and answer["service_notice"]

    # Readable at once (queued), as a list of one.
    first = await api.get(f"{BASE}/requests/{request_id}.json")
    assert first.status_code == 200
    assert [r["status"] for r in first.json()] == ["open"]

    async def stored():
        listed = (await api.get(f"{BASE}/requests/{request_id}.json")).json()
        return listed[0] if listed[0].get("agency_responsible") else None

    record = await eventually(stored, seconds=90)
    assert record["service_code"] == "manhole-cover"
    assert record["service_name"] == "井盖缺失或破损"
    assert record["agency_responsible"] == "鹿城区综合行政执法局"  # routed by the pack's rules
    # The ticket's resolve due time (manhole-cover, high: 12 hours round the clock).
    expected = datetime.fromisoformat(record["expected_datetime"])
    requested_at = datetime.fromisoformat(record["requested_datetime"])
    assert timedelta(hours=11) < expected - requested_at < timedelta(hours=13)
    assert abs(record["lat"] - 28.0166) < 1e-9 and abs(record["long"] - 120.6605) < 1e-9
    assert "138****2345" in record["description"]
    requested = datetime.fromisoformat(record["requested_datetime"])
    assert requested.utcoffset() == timedelta(hours=8)
    text = (await api.get(f"{BASE}/requests/{request_id}.json")).text
    assert "citizen@example.com" not in text and "13857712345" not in text

    xml = ElementTree.fromstring((await api.get(f"{BASE}/requests/{request_id}.xml")).content)
    assert xml.tag == "service_requests"
    assert xml.find("request/service_request_id").text == request_id
    assert xml.find("request/status").text == "open"

    token = (await api.get(f"{BASE}/tokens/{request_id}.json")).json()
    assert token == [{"service_request_id": request_id, "token": request_id}]

    by_id = (
        await api.get(f"{BASE}/requests.json", params={"service_request_id": request_id})
    ).json()
    assert [r["service_request_id"] for r in by_id] == [request_id]
    open_ones = await api.get(
        f"{BASE}/requests.json", params={"service_code": "manhole-cover", "status": "open"}
    )
    assert request_id in {r["service_request_id"] for r in open_ones.json()}

    # The department works the ticket: the request follows.
    ticket_id = await pool.fetchval(
        "SELECT ticket_id FROM event_tickets WHERE event_id = $1", uuid.UUID(request_id)
    )
    department = {"X-API-Key": keys["lucheng"]}
    accepted = await api.post(
        f"/api/v1/tickets/{ticket_id}/accept", headers=department, json={"version": 1}
    )
    assert accepted.status_code == 200, accepted.text
    resolved = await api.post(
        f"/api/v1/tickets/{ticket_id}/resolve",
        headers=department,
        json={"version": accepted.json()["version"], "note": "井盖已更换"},
    )
    assert resolved.status_code == 200, resolved.text
    [closed] = (await api.get(f"{BASE}/requests/{request_id}.json")).json()
    assert closed["status"] == "closed" and closed["status_notes"] == "井盖已更换"
    still_open = await api.get(
        f"{BASE}/requests.json", params={"service_code": "manhole-cover", "status": "open"}
    )
    assert request_id not in {r["service_request_id"] for r in still_open.json()}
    closed_ones = await api.get(f"{BASE}/requests.json", params={"status": "closed"})
    assert request_id in {r["service_request_id"] for r in closed_ones.json()}


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ({"start_date": "2026-01-01T00:00:00Z", "end_date": "2026-06-01T00:00:00Z"}, "90 days"),
        ({"start_date": "last tuesday"}, "ISO 8601"),
        ({"status": "pending"}, "status"),
        (
            {"start_date": "2026-06-01T00:00:00+08:00", "end_date": "2026-05-01T00:00:00+08:00"},
            "after",
        ),
    ],
)
async def test_bad_request_filters(api, params, words):
    response = await api.get(f"{BASE}/requests.json", params=params)
    assert response.status_code == 400
    assert words in response.json()[0]["description"]


async def test_unknown_request_is_404_in_the_error_list(api):
    response = await api.get(f"{BASE}/requests/{uuid.uuid4()}.json")
    assert response.status_code == 404 and response.json()[0]["code"] == 404
    assert (await api.get(f"{BASE}/requests/not-a-uuid.xml")).status_code == 404


async def test_date_window_defaults_to_the_last_90_days(api):
    old = (datetime.now(UTC) - timedelta(days=200)).isoformat()
    response = await api.get(f"{BASE}/requests.json", params={"end_date": old})
    assert response.status_code == 200
    for request in response.json():
        assert datetime.fromisoformat(request["requested_datetime"]) < datetime.fromisoformat(old)
