"""Learn starting routing rules from historical work orders (who handled what, where).

Each (category, district) whose orders one department handled a clear share of becomes a
district rule; each category one department handled most of overall becomes a city-wide
fallback after all district rules. Pairs with too few orders or no clear handler are left to
the fallback (or to triage) and listed in the report, for a person to decide.

Run ``python -m dispatch.routing.bootstrap orders.csv rules.csv`` to write a rules CSV that
``parse_rules`` and the pack read.
"""

from __future__ import annotations

import argparse
import csv
import math
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from dispatch.routing.rules import COLUMNS, Rule, rules_to_rows
from geo.jurisdiction import DistrictIndex
from hub.settings import get_settings

DistrictOf = Callable[[float, float], str | None]
# Rules are numbered with gaps so a person can slot a rule in between without renumbering.
POSITION_STEP = 10


@dataclass(frozen=True)
class _Winner:
    department: str
    count: int
    total: int

    @property
    def share(self) -> float:
        return self.count / self.total


def learn_rules(
    rows: Iterable[Mapping[str, str]],
    *,
    district_of: DistrictOf,
    min_count: int = 5,
    min_share: float = 0.6,
) -> tuple[list[Rule], list[str]]:
    """Rules learned from work orders (``category,district,lon,lat,department``), and a report.

    A (category, district) pair becomes a rule when it has at least ``min_count`` orders and
    one department handled at least ``min_share`` of them. A category gets a city-wide fallback
    when it has at least ``min_count`` orders and one department handled more than half.
    ``district_of(lon, lat)`` finds the district of orders that have only coordinates.
    """
    by_pair: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    by_category: dict[str, Counter[str]] = defaultdict(Counter)
    read = unusable = without_district = 0
    for row in rows:
        read += 1
        category = (row.get("category") or "").strip()
        department = (row.get("department") or "").strip()
        if not category or not department:
            unusable += 1
            continue
        by_category[category][department] += 1
        district = _district(row, district_of)
        if district is None:
            without_district += 1  # still counts towards the category's city-wide fallback
            continue
        by_pair[(category, district)][department] += 1

    report = [
        f"read {read} orders: {unusable} without category or department skipped, "
        f"{without_district} without a district used for city-wide fallbacks only"
    ]
    learned = _district_choices(by_pair, min_count=min_count, min_share=min_share, report=report)
    fallbacks = _fallbacks(by_category, min_count=min_count, report=report)
    # District rules that agree with their fallback stay: rules are edited later, and a
    # changed fallback must not silently take those districts with it.
    district_rules, fallback_rules = _district_rules(learned), _fallback_rules(fallbacks)
    rules = _number(district_rules + fallback_rules)
    report.append(
        f"{len(rules)} rules: {len(district_rules)} for districts, {len(fallback_rules)} city-wide"
    )
    return rules, report


def write_rules_csv(rules: Iterable[Rule], path: str | Path) -> None:
    """Write rules in the pack's ``routing-rules.csv`` format."""
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rules_to_rows(rules))


def district_codes_of(index: DistrictIndex) -> DistrictOf:
    """A ``district_of`` for ``learn_rules`` that answers with ``index``'s division codes."""

    def district_of(lon: float, lat: float) -> str | None:
        district = index.district_of(lon, lat)
        return None if district is None else district.code

    return district_of


def _district(row: Mapping[str, str], district_of: DistrictOf) -> str | None:
    given = (row.get("district") or "").strip()
    if given:
        return given
    try:
        lon, lat = float(row.get("lon") or "nan"), float(row.get("lat") or "nan")
    except ValueError:
        return None
    if math.isnan(lon) or math.isnan(lat):
        return None
    return district_of(lon, lat)


def _winner(counts: Counter[str]) -> _Winner | None:
    """The department with the most orders, or None on a tie (history does not decide)."""
    ranked = counts.most_common(2)
    if len(ranked) == 2 and ranked[0][1] == ranked[1][1]:
        return None
    department, count = ranked[0]
    return _Winner(department, count, sum(counts.values()))


def _district_choices(
    by_pair: Mapping[tuple[str, str], Counter[str]],
    *,
    min_count: int,
    min_share: float,
    report: list[str],
) -> dict[tuple[str, str], str]:
    chosen: dict[tuple[str, str], str] = {}
    too_few = 0
    ambiguous: list[str] = []
    for (category, district), counts in sorted(by_pair.items()):
        total = sum(counts.values())
        if total < min_count:
            too_few += 1
            continue
        winner = _winner(counts)
        if winner is None or winner.share < min_share:
            ambiguous.append(f"{category}@{district} ({_shares(counts)})")
            continue
        chosen[(category, district)] = winner.department
    report.append(
        f"{len(by_pair)} (category, district) pairs: {len(chosen)} learned, "
        f"{too_few} with fewer than {min_count} orders, {len(ambiguous)} ambiguous"
    )
    report.extend(f"ambiguous, skipped: {line}" for line in ambiguous)
    return chosen


def _fallbacks(
    by_category: Mapping[str, Counter[str]], *, min_count: int, report: list[str]
) -> dict[str, str]:
    chosen: dict[str, str] = {}
    for category, counts in sorted(by_category.items()):
        winner = _winner(counts)
        if winner is None or winner.total < min_count or winner.share <= 0.5:
            report.append(f"no city-wide majority for {category} ({_shares(counts)})")
            continue
        chosen[category] = winner.department
    return chosen


def _district_rules(chosen: Mapping[tuple[str, str], str]) -> list[Rule]:
    """One rule per (department, category set), listing every district it covers."""
    # Per district, the categories each department takes; then districts with the same
    # (department, categories) share one rule. Learned pairs never overlap, so order is free.
    per_district: dict[tuple[str, str], set[str]] = defaultdict(set)
    for (category, district), department in chosen.items():
        per_district[(district, department)].add(category)
    merged: dict[tuple[str, frozenset[str]], set[str]] = defaultdict(set)
    for (district, department), categories in per_district.items():
        merged[(department, frozenset(categories))].add(district)
    return [
        Rule(
            position=0,
            name=f"learned: {'|'.join(sorted(categories))} in {'|'.join(sorted(districts))}",
            department_code=department,
            categories=categories,
            districts=frozenset(districts),
        )
        for (department, categories), districts in sorted(
            merged.items(), key=lambda item: (sorted(item[1]), sorted(item[0][1]), item[0][0])
        )
    ]


def _fallback_rules(chosen: Mapping[str, str]) -> list[Rule]:
    """One city-wide rule per department, listing the categories it is the majority for."""
    by_department: dict[str, set[str]] = defaultdict(set)
    for category, department in chosen.items():
        by_department[department].add(category)
    return [
        Rule(
            position=0,
            name=f"learned city-wide: {department}",
            department_code=department,
            categories=frozenset(categories),
        )
        for department, categories in sorted(by_department.items())
    ]


def _number(rules: list[Rule]) -> list[Rule]:
    return [
        replace(rule, position=POSITION_STEP * number) for number, rule in enumerate(rules, start=1)
    ]


def _shares(counts: Counter[str]) -> str:
    total = sum(counts.values())
    return ", ".join(f"{dept} {count}/{total}" for dept, count in counts.most_common(3))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("orders", type=Path, help="CSV: category,district,lon,lat,department")
    parser.add_argument("out", type=Path, help="where to write the rules CSV")
    parser.add_argument(
        "--districts", type=Path, help="GeoJSON of districts (default: the HUB_PACK pack's)"
    )
    parser.add_argument("--min-count", type=int, default=5)
    parser.add_argument("--min-share", type=float, default=0.6)
    args = parser.parse_args(argv)
    districts = args.districts or get_settings().pack_dir / "districts.geojson"
    district_of = district_codes_of(DistrictIndex.from_geojson(districts))
    with open(args.orders, newline="", encoding="utf-8") as handle:
        rules, report = learn_rules(
            csv.DictReader(handle),
            district_of=district_of,
            min_count=args.min_count,
            min_share=args.min_share,
        )
    write_rules_csv(rules, args.out)
    print("\n".join(report))


if __name__ == "__main__":
    main()
