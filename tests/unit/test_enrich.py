"""Enrichment over the real Wenzhou pack and district index. The text classifier here is a stub
with fixed answers, so these tests pin the merge rules, not the model (tests/unit/test_classify.py
tests the model)."""

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from geo.jurisdiction import DistrictIndex
from hub.pack import load_pack
from hub.settings import Settings
from schemas.event import Crs, EventV1, Location, Priority, Source
from streams.enrich.enricher import Enricher

PACK_DIR = Settings().pack_dir


@dataclass(frozen=True)
class Answer:
    category: str | None = None
    confidence: float = 0.0
    priority: str = "normal"
    signals: tuple[str, ...] = ()
    signal_priority: str | None = None
    method: str = "model"
    needs_triage: bool = True


@dataclass(frozen=True)
class StubClassifier:
    answer: Answer

    def classify(self, text: str) -> Answer:
        return self.answer


@pytest.fixture(scope="module")
def districts():
    return DistrictIndex.from_geojson(PACK_DIR / "districts.geojson")


def enricher(districts, answer=Answer()):
    return Enricher(load_pack(PACK_DIR), StubClassifier(answer), districts)


def event(source=Source.HOTLINE_12345, *, lonlat=(120.6994, 27.9938), **fields):
    location = None
    if lonlat is not None:
        lon, lat = lonlat
        location = Location(lon=lon, lat=lat, source_crs=Crs.WGS84, source_lon=lon, source_lat=lat)
    return EventV1(
        event_id=uuid.uuid4(),
        source=source,
        external_id="X-1",
        occurred_at=datetime.now(UTC),
        received_at=datetime.now(UTC),
        location=location,
        text="text",
        raw={},
        **fields,
    )


def test_a_located_classified_report(districts):
    answer = Answer("streetlight", 0.91, "normal", (), None, "model", False)
    result = enricher(districts, answer).enrich(event())
    assert (result.category, result.category_method) == ("streetlight", "model")
    assert result.category_confidence == 0.91
    assert (result.district_name, result.needs_triage) == ("鹿城区", False)
    assert result.h3_cell is not None and result.location_flag is None


def test_an_inspector_code_is_used_not_reguessed(districts):
    answer = Answer("garbage", 0.99, "normal", (), None, "model", False)
    coded = event(Source.URBAN_INSPECTION, source_category="event:01001")
    result = enricher(districts, answer).enrich(coded)
    assert (result.category, result.category_method) == ("manhole-cover", "code")
    assert result.priority is Priority.HIGH  # the category's default


def test_low_confidence_goes_to_triage_but_urgent_signals_still_count(districts):
    answer = Answer(None, 0.2, "urgent", ("gas",), "urgent", "model", True)
    result = enricher(districts, answer).enrich(event())
    assert result.category is None and result.needs_triage
    assert result.priority is Priority.URGENT and result.signals == ("gas",)


def test_a_graded_120_call_keeps_its_level(districts):
    level_four = event(Source.EMERGENCY_120, source_category="level-4", priority=Priority.NORMAL)
    result = enricher(districts).enrich(level_four)
    assert result.category == "medical-emergency"
    assert result.priority is Priority.NORMAL


@pytest.mark.parametrize(
    ("lonlat", "flag"),
    [((0.0, 0.0), "null_island"), ((120.15, 30.27), "outside")],
)
def test_points_that_cannot_be_placed_are_flagged_for_triage(districts, lonlat, flag):
    answer = Answer("streetlight", 0.9, "normal", (), None, "model", False)
    result = enricher(districts, answer).enrich(event(lonlat=lonlat))
    assert result.location_flag == flag and result.district_code is None
    assert result.needs_triage


def test_no_coordinates_but_an_address_naming_a_district(districts):
    answer = Answer("streetlight", 0.9, "normal", (), None, "model", False)
    result = enricher(districts, answer).enrich(event(lonlat=None, address="瑞安市安阳街道"))
    assert result.district_name == "瑞安市" and not result.needs_triage
    nowhere = enricher(districts, answer).enrich(event(lonlat=None, address="某小区门口"))
    assert nowhere.location_flag == "no_location" and nowhere.needs_triage
