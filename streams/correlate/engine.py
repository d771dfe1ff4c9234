"""The correlation rule, over one category's open incidents (an indexed ``OpenSet``).

A report joins the nearest open incident of its category whose members include one within the
category's radius and whose last report is within its time window; otherwise it opens a new
incident. Reports without a category or without a point are never merged (a person triages
them). Candidates are found through H3: the incident keeps its members' resolution-9 cells, the
report looks them up in the disk of cells covering its radius, and only then is the exact
distance computed.

Where it runs: events are keyed by category on ``events.enriched`` (see
``correlation_key``), so every report that could join an incident meets the others of its
category in one partition, boundaries of districts and cells included.
"""

from __future__ import annotations

import heapq
import math
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from geo.h3cells import cells_within_metres
from schemas.event import EventV1, Priority

# Fixed, never changed: an incident's id derives from its first report, so a replay opens the
# same incident, never a second one.
INCIDENT_ID_NAMESPACE = uuid.UUID("8f4a3b1e-2c67-4d0a-9e55-0b7c3a1d6f90")
_RANK = [Priority.LOW, Priority.NORMAL, Priority.HIGH, Priority.URGENT]
# Many reports about one problem make it more pressing: one level up at each of these counts.
ESCALATE_AT_REPORTS = (5, 10)
Change = Literal["created", "attached", "duplicate"]


@dataclass(frozen=True)
class Rule:
    radius_m: float = 300.0
    window: timedelta = timedelta(hours=2)


@dataclass
class Member:
    event_id: str
    lon: float
    lat: float
    at: datetime
    source: str
    priority: Priority


@dataclass
class Incident:
    incident_id: uuid.UUID
    category: str | None
    opened_at: datetime
    last_seen: datetime
    members: list[Member] = field(default_factory=list)
    cells: set[int] = field(default_factory=set)

    @property
    def reports(self) -> int:
        return len(self.members)

    @property
    def sources(self) -> list[str]:
        return sorted({m.source for m in self.members})

    @property
    def priority(self) -> Priority:
        """The highest of its reports, a level up per escalation threshold, at least high when a
        sensor alarm is among them."""
        rank = max(_RANK.index(m.priority) for m in self.members)
        rank += sum(self.reports >= n for n in ESCALATE_AT_REPORTS)
        if "iot" in self.sources:
            rank = max(rank, _RANK.index(Priority.HIGH))
        return _RANK[min(rank, len(_RANK) - 1)]

    @property
    def centre(self) -> tuple[float, float]:
        return (
            sum(m.lon for m in self.members) / self.reports,
            sum(m.lat for m in self.members) / self.reports,
        )


def incident_id_for(event_id: uuid.UUID) -> uuid.UUID:
    return uuid.uuid5(INCIDENT_ID_NAMESPACE, str(event_id))


def correlation_key(event: EventV1) -> bytes:
    """Reports that may merge share a key: their category. The others are alone by design."""
    if event.category is None or event.location is None or event.needs_triage:
        return b"alone:" + event.event_id.bytes
    return b"category:" + event.category.encode()


def metres_between(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    """Great-circle distance (haversine, mean Earth radius)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * 6_371_008.8 * math.asin(math.sqrt(a))


class OpenSet:
    """The incidents of one correlation key a new report could still join, indexed so that a
    report costs the same with ten or ten thousand open ones: members by event id (replays),
    incidents by H3 cell (what is near), and a heap by last report (what has expired)."""

    def __init__(self, incidents: Iterable[Incident] = ()) -> None:
        self._by_id: dict[uuid.UUID, Incident] = {}
        self._by_event: dict[str, Incident] = {}
        self._by_cell: dict[int, set[uuid.UUID]] = {}
        # (last report, id); an incident's older entries stay until popped, and are skipped then.
        self._by_last_seen: list[tuple[datetime, uuid.UUID]] = []
        for incident in incidents:
            self.add(incident)

    def __len__(self) -> int:
        return len(self._by_id)

    def __iter__(self) -> Iterator[Incident]:
        return iter(list(self._by_id.values()))

    def add(self, incident: Incident) -> None:
        self._by_id[incident.incident_id] = incident
        for member in incident.members:
            self._by_event[member.event_id] = incident
        for cell in incident.cells:
            self._by_cell.setdefault(cell, set()).add(incident.incident_id)
        heapq.heappush(self._by_last_seen, (incident.last_seen, incident.incident_id))

    def joined(self, incident: Incident, event: EventV1) -> None:
        """Index a report that ``_add`` just put into one of these incidents."""
        self._by_event[str(event.event_id)] = incident
        if event.h3_cell is not None:
            self._by_cell.setdefault(event.h3_cell, set()).add(incident.incident_id)
        heapq.heappush(self._by_last_seen, (incident.last_seen, incident.incident_id))

    def owner_of(self, event_id: str) -> Incident | None:
        return self._by_event.get(event_id)

    def near(self, cells: Iterable[int]) -> list[Incident]:
        ids: set[uuid.UUID] = set()
        for cell in cells:
            ids |= self._by_cell.get(cell, set())
        return [self._by_id[i] for i in ids]

    def expire(self, *, now: datetime, window: timedelta) -> list[Incident]:
        """Remove and return the incidents whose last report is older than ``window``."""
        expired = []
        heap = self._by_last_seen
        while heap and now - heap[0][0] > window:
            at, incident_id = heapq.heappop(heap)
            incident = self._by_id.get(incident_id)
            if incident is None or incident.last_seen != at:
                continue  # a stale entry: the incident was seen since, or is gone
            self._remove(incident)
            expired.append(incident)
        return expired

    def _remove(self, incident: Incident) -> None:
        del self._by_id[incident.incident_id]
        for member in incident.members:
            self._by_event.pop(member.event_id, None)
        for cell in incident.cells:
            ids = self._by_cell.get(cell)
            if ids is not None:
                ids.discard(incident.incident_id)
                if not ids:
                    del self._by_cell[cell]


def correlate(open_set: OpenSet, event: EventV1, rule: Rule) -> tuple[Incident, Change]:
    """Attach ``event`` to an incident of ``open_set`` (changed in place) or open one."""
    owner = open_set.owner_of(str(event.event_id))
    if owner is not None:
        return owner, "duplicate"  # a replay: it is a member already
    located = event.location is not None and event.category is not None and not event.needs_triage
    if located:
        assert event.location is not None
        lon, lat = event.location.lon, event.location.lat
        best: tuple[float, Incident] | None = None
        for incident in open_set.near(cells_within_metres(lon, lat, rule.radius_m)):
            if incident.category != event.category:
                continue
            if event.occurred_at - incident.last_seen > rule.window:
                continue
            distance = min(metres_between(lon, lat, m.lon, m.lat) for m in incident.members)
            if distance <= rule.radius_m and (best is None or distance < best[0]):
                best = (distance, incident)
        if best is not None:
            _add(best[1], event)
            open_set.joined(best[1], event)
            return best[1], "attached"
    incident = Incident(
        incident_id=incident_id_for(event.event_id),
        category=event.category,
        opened_at=event.occurred_at,
        last_seen=event.occurred_at,
    )
    _add(incident, event)
    if located:
        open_set.add(incident)
    return incident, "created"


def _add(incident: Incident, event: EventV1) -> None:
    location = event.location
    incident.members.append(
        Member(
            event_id=str(event.event_id),
            lon=location.lon if location else 0.0,
            lat=location.lat if location else 0.0,
            at=event.occurred_at,
            source=event.source.value,
            priority=event.priority,
        )
    )
    if location is not None and event.h3_cell is not None:
        incident.cells.add(event.h3_cell)
    incident.last_seen = max(incident.last_seen, event.occurred_at)


def to_state(incidents: list[Incident]) -> list[dict[str, Any]]:
    return [
        {
            "incident_id": str(i.incident_id),
            "category": i.category,
            "opened_at": i.opened_at.isoformat(),
            "last_seen": i.last_seen.isoformat(),
            "cells": sorted(i.cells),
            "members": [
                [m.event_id, m.lon, m.lat, m.at.isoformat(), m.source, m.priority.value]
                for m in i.members
            ],
        }
        for i in incidents
    ]


def from_state(rows: list[dict[str, Any]]) -> list[Incident]:
    return [
        Incident(
            incident_id=uuid.UUID(row["incident_id"]),
            category=row["category"],
            opened_at=datetime.fromisoformat(row["opened_at"]),
            last_seen=datetime.fromisoformat(row["last_seen"]),
            cells=set(row["cells"]),
            members=[
                Member(e, lon, lat, datetime.fromisoformat(at), source, Priority(priority))
                for e, lon, lat, at, source, priority in row["members"]
            ],
        )
        for row in rows
    ]
