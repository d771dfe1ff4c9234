"""Benchmark of ``geo.jurisdiction.DistrictIndex``: how long it takes to build, how fast it answers.

For each H3 resolution asked for, builds the index from the pack's districts ``--repeat`` times
(best and median time), then times ``district_of`` over random points (fixed seed) in the
districts' bounding box, in four sets:

* ``interior``: points whose cell lies wholly in one district (a dict lookup answers);
* ``boundary``: points in cells on a border (exact point-in-polygon on the candidates);
* ``in_city``: points in some district, as a real event stream would mostly be;
* ``bbox``: every point, including sea and neighbouring cities.

Each rate is the best of ``--repeat`` passes. Needs no services. Run it as
``python -m bench.geo [--res 7 8 9] [--points 200000] [--repeat 3]``; it prints a summary and
writes JSON to ``bench/results/geo-<timestamp>.json`` (git-ignored) or ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

from geo.h3cells import cell_of
from geo.jurisdiction import DistrictIndex

REPO = Path(__file__).resolve().parent.parent
DISTRICTS_FILE = REPO / "packs" / "wenzhou" / "districts.geojson"
RESULTS_DIR = Path(__file__).resolve().parent / "results"


def best_rate(
    lookup: Callable[[float, float], Any], points: list[tuple[float, float]], repeat: int
) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for lon, lat in points:
            lookup(lon, lat)
        best = min(best, time.perf_counter() - start)
    return len(points) / best if points else 0.0


def measure(res: int, n_points: int, repeat: int, seed: int) -> dict[str, Any]:
    build_times = []
    for _ in range(repeat):
        start = time.perf_counter()
        index = DistrictIndex.from_geojson(DISTRICTS_FILE, res=res)
        build_times.append(time.perf_counter() - start)

    rng = random.Random(seed)  # noqa: S311 - reproducible test points, not secrets
    west, south, east, north = index.bbox
    bbox_points = [(rng.uniform(west, east), rng.uniform(south, north)) for _ in range(n_points)]
    interior = index.interior_cells
    in_city: list[tuple[float, float]] = []
    interior_points: list[tuple[float, float]] = []
    boundary_points: list[tuple[float, float]] = []
    for lon, lat in bbox_points:
        if index.district_of(lon, lat) is None:
            continue
        in_city.append((lon, lat))
        in_interior_cell = cell_of(lon, lat, res) in interior
        (interior_points if in_interior_cell else boundary_points).append((lon, lat))

    lookup = index.district_of
    sets = {
        "interior": interior_points,
        "boundary": boundary_points,
        "in_city": in_city,
        "bbox": bbox_points,
    }
    return {
        "res": res,
        "build_s": {"best": min(build_times), "median": statistics.median(build_times)},
        "interior_cells": len(interior),
        "boundary_cells": len(index.boundary_cells),
        "share_of_in_city_points_in_boundary_cells": len(boundary_points) / len(in_city),
        "lookups_per_s": {name: best_rate(lookup, pts, repeat) for name, pts in sets.items()},
        "points": {name: len(pts) for name, pts in sets.items()},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--res", type=int, nargs="+", default=[7, 8, 9])
    parser.add_argument("--points", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)

    started = datetime.now(UTC)
    runs = [measure(res, args.points, args.repeat, args.seed) for res in args.res]
    result = {
        "benchmark": "geo.jurisdiction",
        "started": started.isoformat(),
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "h3": version("h3"),
            "shapely": version("shapely"),
        },
        "parameters": {"points": args.points, "repeat": args.repeat, "seed": args.seed},
        "districts_file": str(DISTRICTS_FILE.relative_to(REPO)),
        "runs": runs,
    }
    out = args.out or RESULTS_DIR / f"geo-{started.strftime('%Y%m%dT%H%M%SZ')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")

    print(f"{'res':>3} {'build s':>8} {'interior':>9} {'boundary':>9}  lookups/s")
    for run in runs:
        rates = "  ".join(f"{k} {v:,.0f}" for k, v in run["lookups_per_s"].items())
        print(
            f"{run['res']:>3} {run['build_s']['best']:>8.2f} {run['interior_cells']:>9} "
            f"{run['boundary_cells']:>9}  {rates}"
        )
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
