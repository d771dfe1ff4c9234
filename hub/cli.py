"""`hub`: one command for the local infrastructure, the database, the API, the worker, the demo."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from collections.abc import Callable
from typing import Any

import asyncpg

from hub import infra
from hub.settings import Settings, get_settings
from schemas import topics


def cmd_infra(args: argparse.Namespace, settings: Settings) -> int:
    if args.action == "up":
        for line in infra.up(settings):
            print(line)
    elif args.action == "down":
        for line in infra.down(settings):
            print(line)
    else:
        rows = infra.status(settings)
        for service, answers, where in rows:
            print(f"{service:<9} {'answers' if answers else 'DOWN':<8} {where}")
        return 0 if all(answers for _, answers, _ in rows) else 1
    return 0


async def migrate_all(settings: Settings) -> list[str]:
    """Apply database migrations and create missing Kafka topics; describe what changed."""
    from hub.bus import ensure_topics
    from hub.migrate import migrate

    applied = await migrate(settings.dsn)
    report = await ensure_topics(
        settings.bootstrap,
        [settings.topic(name) for name in topics.ALL],
        partitions=settings.topic_partitions,
        replication=settings.topic_replication,
        compacted=frozenset(settings.topic(name) for name in topics.COMPACTED),
    )
    return [
        f"migrations applied: {', '.join(applied) or 'none (up to date)'}",
        f"topics created: {', '.join(report.created) or 'none (all exist)'}",
        *[f"topic {name} was not compacted: made compacted" for name in report.made_compacted],
    ]


def cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    for line in asyncio.run(migrate_all(settings)):
        print(line)
    return 0


async def seed_pack(settings: Settings, pack: str) -> int:
    from hub.pack import load_pack
    from hub.seed import seed

    conn = await asyncpg.connect(settings.dsn)
    try:
        return await seed(conn, load_pack(settings.packs_dir / pack))
    finally:
        await conn.close()


def cmd_seed(args: argparse.Namespace, settings: Settings) -> int:
    count = asyncio.run(seed_pack(settings, args.pack))
    print(f"pack {args.pack}: {count} departments")
    return 0


async def create_key(settings: Settings, role: Any, scope: str, label: str) -> str:
    from hub.auth import create_api_key

    conn = await asyncpg.connect(settings.dsn)
    try:
        return await create_api_key(conn, role=role, scope=scope, label=label)
    finally:
        await conn.close()


def cmd_keys(args: argparse.Namespace, settings: Settings) -> int:
    if (args.role == "ops") != (args.scope == ""):
        print("--scope is required for source and department keys, and empty for ops")
        return 2
    key = asyncio.run(create_key(settings, args.role, args.scope, args.label))
    print(key)
    print("shown once: only its hash is stored", file=sys.stderr)
    return 0


def cmd_api(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    uvicorn.run(
        "hub.api:create_app",
        factory=True,
        host=args.host or settings.api_host,
        port=args.port or settings.api_port,
        workers=args.workers or settings.api_workers,
        access_log=settings.api_access_log,
        log_level="info",
        # Dashboards keep websockets open: without a bound, a stop waits for them for ever.
        timeout_graceful_shutdown=5,
        # permessage-deflate compresses each frame once per client (a frame is shared, its
        # compression cannot be): with 200 dashboards it was 79 % of the API's CPU.
        ws_per_message_deflate=False,
        # A dashboard only sends a hello, filters and pings: nothing near this.
        ws_max_size=64 * 1024,
    )
    return 0


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    from streams.app import app

    (settings.state_dir / "worker").mkdir(parents=True, exist_ok=True)  # Faust makes one level
    # --without-web: Faust's `worker` command would otherwise turn its web UI on (0.0.0.0:6066).
    sys.argv = ["hub worker", "worker", "--without-web", "--loglevel", args.loglevel]
    app.main()
    return 0


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from hub.demo import run_demo

    return run_demo(settings, keep_running=not args.once, devices=args.devices)


def cmd_vendors(args: argparse.Namespace, settings: Settings) -> int:
    async def add() -> None:
        conn = await asyncpg.connect(settings.dsn)
        try:
            await conn.execute(
                """INSERT INTO vendors (code, name) VALUES ($1, $2)
                   ON CONFLICT (code) DO UPDATE SET name = excluded.name""",
                args.code,
                args.name or args.code,
            )
        finally:
            await conn.close()

    asyncio.run(add())
    print(f"vendor {args.code}: its systems authenticate with "
          f"`hub keys create --role vendor --scope {args.code}`")  # fmt: skip
    return 0


def cmd_gateway(args: argparse.Namespace, settings: Settings) -> int:
    from iot_ingest.mqtt.gateway import run_gateway

    logging.basicConfig(level=args.loglevel.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")  # fmt: skip
    host, port = args.host or settings.mqtt_host, args.port or settings.mqtt_port
    asyncio.run(run_gateway(settings, host=host, port=port))
    return 0


def cmd_gateways(args: argparse.Namespace, settings: Settings) -> int:
    from iot_ingest.registry import RegistryError, create_gateway

    async def add() -> str:
        conn = await asyncpg.connect(settings.dsn)
        try:
            return await create_gateway(conn, args.vendor, args.name)
        finally:
            await conn.close()

    try:
        token = asyncio.run(add())
    except RegistryError as exc:
        print(f"hub: {exc}", file=sys.stderr)
        return 1
    print(token)
    print(f"gateway {args.name!r} of {args.vendor}: connect with this token as MQTT user name "
          "(shown only this once; only its hash is stored)", file=sys.stderr)  # fmt: skip
    return 0


def _district_of(settings: Settings) -> Callable[[float, float], str | None]:
    from geo.jurisdiction import DistrictIndex

    index = DistrictIndex.from_geojson(settings.pack_dir / "districts.geojson")

    def district_of(lon: float, lat: float) -> str | None:
        district = index.district_of(lon, lat)
        return district.code if district else None

    return district_of


def cmd_devices(args: argparse.Namespace, settings: Settings) -> int:
    import csv
    import time

    from hub.pack import load_pack
    from iot_ingest.registry import RegistryError, import_file

    pack = load_pack(settings.pack_dir)
    district_of = _district_of(settings)

    async def run() -> Any:
        conn = await asyncpg.connect(settings.dsn)
        try:
            return await import_file(conn, args.file, district_of=district_of,
                                     contains=pack.contains)  # fmt: skip
        finally:
            await conn.close()

    started = time.perf_counter()
    try:
        report = asyncio.run(run())
    except (RegistryError, FileNotFoundError) as exc:
        print(f"hub: {exc}", file=sys.stderr)
        return 1
    print(f"{report.rows} devices read, {report.new} new, in {time.perf_counter() - started:.1f} s")
    if report.tokens:
        with open(args.tokens_out, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["vendor", "serial", "token"])
            writer.writerows(report.tokens)
        print(f"{len(report.tokens)} new access tokens written to {args.tokens_out} "
              "(shown only this once: only their hashes are stored)")  # fmt: skip
    return 0


def cmd_simulate(args: argparse.Namespace, settings: Settings) -> int:
    from hub.auth import create_api_key
    from hub.pack import load_pack
    from iot_ingest import simulator
    from iot_ingest.registry import create_gateway, import_rows

    pack = load_pack(settings.pack_dir)
    district_of = _district_of(settings)
    devices = simulator.place_devices(args.devices, seed=args.seed, bbox=pack.bbox,
                                      district_of=district_of)  # fmt: skip
    rows = [{"serial": d.serial, "vendor": "sim", "profile": d.profile, "lon": str(d.lon),
             "lat": str(d.lat)} for d in devices]  # fmt: skip

    async def prepare() -> tuple[str, list[str]]:
        conn = await asyncpg.connect(settings.dsn)
        try:
            await conn.execute(
                "INSERT INTO vendors (code, name) VALUES ('sim', 'hub simulate')"
                " ON CONFLICT (code) DO NOTHING"
            )
            report = await import_rows(conn, rows, district_of=district_of,
                                       contains=pack.contains)  # fmt: skip
            print(f"simulate: {report.rows} devices registered ({report.new} new)")
            if args.via == "http":
                key = await create_api_key(conn, role="vendor", scope="sim", label="hub simulate")
                return key, []
            tokens = [await create_gateway(conn, "sim", f"sim-gateway-{i}")
                      for i in range(args.gateways)]  # fmt: skip
            return "", tokens
        finally:
            await conn.close()

    key, gateway_tokens = asyncio.run(prepare())
    scenario = simulator.Scenario(name=args.scenario, started_at=time.time())
    options: dict[str, Any] = {"interval_s": args.interval, "duration_s": args.duration,
                               "scenario": scenario}  # fmt: skip
    if args.via == "http":
        base = args.api or f"http://{settings.api_host}:{settings.api_port}"
        target = f"posting to {base}"
        running = simulator.run_http(base, key, devices, **options)
    else:
        host, port = settings.mqtt_host, settings.mqtt_port
        if args.mqtt:
            host, _, given = args.mqtt.rpartition(":")
            port = int(given)
        target = f"publishing through {len(gateway_tokens)} MQTT gateways to {host}:{port}"
        running = simulator.run_mqtt(host, port, gateway_tokens, devices, **options)
    print(f"simulate: {len(devices)} devices every {args.interval} s, scenario {args.scenario}, "
          f"{target}")  # fmt: skip
    try:
        totals = asyncio.run(running)
    except KeyboardInterrupt:
        return 0
    print(f"simulate: done: {totals.accepted} accepted, {totals.rejected} rejected, "
          f"{totals.failed_requests} failed requests")  # fmt: skip
    return 0 if totals.failed_requests == 0 else 1


def cmd_routing(args: argparse.Namespace, settings: Settings) -> int:
    from dispatch.routing.bootstrap import main as learn

    learn(args.rest)
    return 0


def cmd_reconcile(args: argparse.Namespace, settings: Settings) -> int:
    from datetime import UTC, datetime, timedelta

    import orjson

    from dispatch.reconcile import reconcile

    async def run() -> Any:
        conn = await asyncpg.connect(settings.dsn)
        try:
            return await reconcile(conn, settings.pack_dir, now=datetime.now(UTC),
                                   settle=timedelta(seconds=args.settle))  # fmt: skip
        finally:
            await conn.close()

    report = asyncio.run(run())
    if args.json:
        print(orjson.dumps(report.as_dict(), option=orjson.OPT_INDENT_2).decode())
    else:
        print("\n".join(report.lines()))
    return 0 if report.ok else 1


def cmd_bench(args: argparse.Namespace, settings: Settings) -> int:
    from pathlib import Path

    # The benchmarks live in the checkout beside the package, not in what pip installs.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from bench.e2e import main as e2e

    return e2e(args.rest)


def cmd_lag(args: argparse.Namespace, settings: Settings) -> int:
    from hub.lag import by_group, consumer_lag

    rows = asyncio.run(consumer_lag(settings.bootstrap, f"{settings.topic_prefix}hub-"))
    if args.json:
        import orjson

        print(orjson.dumps([{**vars(row), "lag": row.lag} for row in rows]).decode())
        return 0
    if args.partitions:
        for row in rows:
            print(f"{row.group:<32} {row.topic:<32} {row.partition:>3} "
                  f"{row.committed:>10} {row.end:>10} {row.lag:>8}")  # fmt: skip
    for group, lag in by_group(rows).items():
        print(f"{group:<32} lag {lag}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hub", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("infra", help="local Kafka and PostgreSQL: up, down, status")
    p.add_argument("action", choices=["up", "down", "status"])
    p.set_defaults(func=cmd_infra)

    p = sub.add_parser("migrate", help="apply database migrations and create Kafka topics")
    p.set_defaults(func=cmd_migrate)

    p = sub.add_parser("seed", help="load a jurisdiction pack (departments, …)")
    p.add_argument("--pack", default="wenzhou")
    p.set_defaults(func=cmd_seed)

    p = sub.add_parser("keys", help="create an API key (printed once)")
    p.add_argument("action", choices=["create"])
    p.add_argument("--role", choices=["source", "department", "ops", "vendor"], required=True)
    p.add_argument("--scope", default="", help="source name, department or vendor code")
    p.add_argument("--label", default="")
    p.set_defaults(func=cmd_keys)

    p = sub.add_parser("api", help="serve the HTTP API")
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.add_argument("--workers", type=int, help="processes (default HUB_API_WORKERS or 1)")
    p.set_defaults(func=cmd_api)

    p = sub.add_parser("worker", help="run the Faust stream worker")
    p.add_argument("--loglevel", default="info", choices=["crit", "error", "warn", "info", "debug"])
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser("vendors", help="add a device vendor: hub vendors add CODE [--name NAME]")
    p.add_argument("action", choices=["add"])
    p.add_argument("code")
    p.add_argument("--name", default="")
    p.set_defaults(func=cmd_vendors)

    p = sub.add_parser("gateway", help="serve the MQTT device gateway")
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.add_argument("--loglevel", default="info", choices=["error", "warning", "info", "debug"])
    p.set_defaults(func=cmd_gateway)

    p = sub.add_parser("gateways", help="register an MQTT gateway: hub gateways add VENDOR NAME")
    p.add_argument("action", choices=["add"])
    p.add_argument("vendor")
    p.add_argument("name")
    p.set_defaults(func=cmd_gateways)

    p = sub.add_parser(
        "devices", help="import devices from CSV: hub devices import FILE [--tokens-out FILE]"
    )
    p.add_argument("action", choices=["import"])
    p.add_argument("file")
    p.add_argument("--tokens-out", default="device-tokens.csv",
                   help="where the tokens the hub makes for new devices go (CSV)")  # fmt: skip
    p.set_defaults(func=cmd_devices)

    p = sub.add_parser("simulate", help="simulated devices reporting over HTTP or MQTT")
    p.add_argument("--devices", type=int, default=1000)
    p.add_argument("--interval", type=int, default=10, help="seconds between a device's reports")
    p.add_argument("--duration", type=float, default=0, help="seconds; 0 runs until Ctrl-C")
    p.add_argument("--scenario", choices=["calm", "typhoon", "fire", "offline"], default="calm")
    p.add_argument(
        "--via",
        choices=["http", "mqtt"],
        default="http",
        help="the vendors' batch API, or MQTT gateways (v1/gateway/telemetry)",
    )
    p.add_argument("--api", help="the hub's API (default: HUB_API_HOST:HUB_API_PORT)")
    p.add_argument("--mqtt", help="HOST:PORT of `hub gateway` (default: HUB_MQTT_HOST:PORT)")
    p.add_argument("--gateways", type=int, default=4, help="MQTT gateway connections")
    p.add_argument("--seed", type=int, default=1)
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser(
        "routing",
        help="learn routing rules from historical work orders: "
        "hub routing learn ORDERS.csv RULES.csv [--min-count N] [--min-share F]",
    )
    p.add_argument("action", choices=["learn"])
    p.add_argument("rest", nargs=argparse.REMAINDER, help="ORDERS.csv RULES.csv [options]")
    p.set_defaults(func=cmd_routing)

    p = sub.add_parser(
        "reconcile",
        help="prove every accepted input is in exactly one incident and ticket, histories "
        "complete, SLA due times right (read-only; exit 1 and the examples if not)",
    )
    p.add_argument("--settle", type=float, default=60.0,
                   help="seconds: younger inputs are still in flight and not checked")  # fmt: skip
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_reconcile)

    p = sub.add_parser(
        "bench", help="end-to-end benchmark: hub bench e2e [--duration S] … (bench/README.md)"
    )
    p.add_argument("name", choices=["e2e"])
    p.add_argument("rest", nargs=argparse.REMAINDER, help="the benchmark's options (--help)")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("lag", help="consumer lag of each stage's group (committed vs end)")
    p.add_argument("--partitions", action="store_true", help="one line per partition too")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_lag)

    p = sub.add_parser("demo", help="everything, plus a sample event; Ctrl-C stops it")
    p.add_argument("--once", action="store_true", help="stop after the sample ticket is shown")
    p.add_argument("--devices", type=int, default=100_000, help="simulated devices")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    func: Callable[[argparse.Namespace, Settings], int] = args.func
    try:
        return func(args, get_settings())
    except infra.InfraError as exc:
        print(f"hub: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
