"""One object holding what enrichment needs, loaded once per worker from the pack."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from geo.jurisdiction import DistrictIndex
from hub.pack import Pack, load_pack
from schemas.event import EventV1
from streams.classify import Classifier
from streams.enrich.categorize import TextClassifier, categorize
from streams.enrich.locate import DistrictLookup, locate


@dataclass(frozen=True)
class Enricher:
    pack: Pack
    classifier: TextClassifier
    districts: DistrictLookup

    def enrich(self, event: EventV1) -> EventV1:
        update = {
            **categorize(event, pack=self.pack, classifier=self.classifier),
            **locate(event, districts=self.districts),
        }
        # Unknown category or no district: a person decides where it goes.
        update["needs_triage"] = bool(update["needs_triage"]) or update["district_code"] is None
        return event.model_copy(update=update)


@lru_cache
def load_enricher(pack_dir: Path) -> Enricher:
    """Loading trains the text model and indexes the districts: seconds, once per process."""
    return Enricher(
        pack=load_pack(pack_dir),
        classifier=Classifier.from_pack(pack_dir),
        districts=DistrictIndex.from_geojson(pack_dir / "districts.geojson"),
    )
