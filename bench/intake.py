"""Benchmark of the civic intake API: how many 12345 work orders per second it makes durable.

Starts its own API server on a free port, with a topic prefix of its own so benchmark records
never mix with anyone else's, then measures two phases against it:

* ``single``: many concurrent clients each POST one order at a time;
* ``batch``: a few concurrent clients POST lists of orders to the ``:batch`` endpoint.

Needs the Kafka and PostgreSQL that ``hub infra up`` starts (or the ones ``HUB_*`` names).
Run it as ``python -m bench.intake --help``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import random
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx

from hub.settings import Settings

SOURCE = "hotline-12345"
SINGLE_PATH = f"/api/v1/intake/{SOURCE}"
BATCH_PATH = f"{SINGLE_PATH}:batch"
RESULTS_DIR = Path(__file__).resolve().parent / "results"
READY_TIMEOUT_S = 60.0
STOP_GRACE_S = 15.0
REQUEST_TIMEOUT_S = 30.0  # well above the API's own Kafka send timeout, so the API answers first
MAX_BATCH_CONCURRENCY = 8
CHINA_TZ = timezone(timedelta(hours=8))
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1", "[::1]"}

# Where in Lucheng district the orders come from: (street, nearby landmark).
PLACES = [
    ("五马街", "五马街口"),
    ("解放北路", "解放北路菜场"),
    ("人民中路", "人民中路公交站"),
    ("车站大道", "温州南站广场"),
    ("锦绣路", "锦绣路小学"),
    ("府前街", "府前街社区"),
    ("江滨西路", "江滨公园"),
    ("望江东路", "望江路码头"),
    ("南塘街", "南塘风貌街"),
    ("学院中路", "学院路农贸市场"),
]
# Realistic 诉求内容, about 60 characters each; ``{street}``, ``{spot}``, ``{phone}`` vary.
COMPLAINTS = [
    "{street}{spot}附近有工地夜间施工，噪音一直持续到凌晨两点，严重影响周边居民休息，"
    "希望相关部门尽快核查处理。",
    "{street}{spot}旁边的窨井盖破损松动，车辆经过时响声很大，行人容易踩空，存在安全隐患，请尽快维修。",
    "{street}{spot}一带路灯已经坏了一个多星期，晚上路面漆黑一片，老人小孩出行很不安全，请派人修复。",
    "{street}{spot}门口的垃圾桶满溢多日无人清运，气味很大还招苍蝇，影响环境卫生，请环卫部门及时处理。",
    "{street}{spot}附近有餐饮店油烟直排，整栋楼都是油烟味，窗户都不敢开，多次沟通无果，请执法部门处理。",
    "{street}{spot}人行道被电动车和共享单车大量占用，行人只能走机动车道，非常危险，请城管部门清理。",
    "{street}{spot}自来水从昨天起水压很低，高层住户基本没水用，也没有看到停水通知，请供水公司核实。",
    "{street}{spot}路段雨后积水严重，水深没过脚踝，排水口可能堵塞，车辆行人通行困难，请尽快疏通。",
    "{street}{spot}有一棵行道树枝干断裂悬在半空，随时可能掉落砸到行人和车辆，请园林部门尽快处理。",
    "{street}{spot}有人在小区绿化带私自搭建棚子堆放杂物，存在消防隐患，来电人电话{phone}，请核查。",
]


@dataclass
class PhaseStats:
    """What one phase saw; kept raw (every latency) so percentiles are exact, not estimated."""

    latencies_s: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    events_accepted: int = 0
    batch_counts: Counter[str] = field(default_factory=Counter)
    skipped: str | None = None

    @property
    def requests(self) -> int:
        return len(self.latencies_s)


class BenchError(RuntimeError):
    """Something the person running the benchmark must fix; printed without a traceback."""


class OrderFactory:
    """Unique, plausible 12345 work orders: unique so the API never treats one as a repeat."""

    def __init__(self, run_id: str) -> None:
        self._run_id = run_id
        self._rng = random.Random()  # noqa: S311 - test data, not secrets

    def _phone(self) -> str:
        return "138" + "".join(self._rng.choice("0123456789") for _ in range(8))

    def order(self, task: str, n: int) -> dict[str, Any]:
        street, spot = self._rng.choice(PLACES)
        phone = self._phone()
        content = self._rng.choice(COMPLAINTS).format(street=street, spot=spot, phone=phone)
        return {
            "order_no": f"BENCH-{self._run_id}-{task}-{n}",
            "call_time": datetime.now(CHINA_TZ).isoformat(timespec="seconds"),
            "content": content,
            "request_type": "投诉",
            "address": f"温州市鹿城区{street}{spot}",
            "longitude": round(120.65 + self._rng.uniform(-0.02, 0.02), 6),
            "latitude": round(28.01 + self._rng.uniform(-0.02, 0.02), 6),
            "coord_system": "GCJ02",
            "caller_phone": phone,
            "urgent": False,
        }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.intake", description=__doc__)
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each phase")
    parser.add_argument("--concurrency", type=int, default=64, help="clients in the single phase")
    parser.add_argument("--batch-size", type=int, default=200, help="orders per batch request")
    parser.add_argument("--workers", type=int, default=1, help="API processes (uvicorn workers)")
    parser.add_argument("--out", type=Path, help="result JSON (default bench/results/intake-…)")
    args = parser.parse_args(argv)
    for name in ("seconds", "concurrency", "batch_size", "workers"):
        if getattr(args, name) <= 0:
            parser.error(f"--{name.replace('_', '-')} must be positive")
    return args


# --- preparing and running the API server -------------------------------------------------


async def prepare(settings: Settings) -> str:
    """Migrate, seed and create a source key, as an operator would before opening intake."""
    from hub.cli import create_key, migrate_all, seed_pack

    try:
        await migrate_all(settings)
        await seed_pack(settings, "wenzhou")
        return await create_key(settings, "source", SOURCE, "bench")
    except Exception as exc:
        raise BenchError(
            f"cannot prepare the database and topics ({exc!r}); "
            "has `hub infra up` been run (see `hub infra status`)?"
        ) from exc


def free_port() -> int:
    """A port nothing listens on now, so the benchmark never hits someone's running API."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def api_command(port: int, workers: int) -> list[str]:
    """`hub api` for one process; uvicorn itself for several, since `hub api` has no --workers."""
    if workers == 1:
        return [sys.executable, "-m", "hub.cli", "api", "--port", str(port)]
    uvicorn = [sys.executable, "-m", "uvicorn", "hub.api:create_app", "--factory"]
    return [*uvicorn, "--port", str(port), "--workers", str(workers), "--log-level", "warning"]


def start_api(command: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    """Start the API in its own session: a terminal Ctrl-C reaches only us, and we then send it
    exactly one SIGINT (a second one would make uvicorn skip its graceful shutdown)."""
    with open(log_path, "ab") as log:
        return subprocess.Popen(  # noqa: S603 - our own interpreter and fixed arguments
            command,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def stop_api(server: subprocess.Popen[bytes]) -> None:
    """SIGINT for a graceful shutdown (the producer flushes); kill if it takes over 15 s."""
    if server.poll() is not None:
        return
    server.send_signal(signal.SIGINT)
    try:
        server.wait(timeout=STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        pass
    finally:  # also on a second Ctrl-C while waiting: never leave the server behind
        if server.poll() is None:
            server.kill()
            server.wait()


def sigterm_as_sigint(signum: int, frame: object) -> None:
    """Make `kill` stop the benchmark exactly like Ctrl-C, which asyncio.run handles cleanly."""
    signal.raise_signal(signal.SIGINT)


async def wait_ready(base_url: str, exited: Callable[[], int | None], log_path: Path) -> None:
    """Wait for /readyz 200, which means the API reaches both Kafka and PostgreSQL."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    async with httpx.AsyncClient(base_url=base_url, timeout=5) as client:
        while time.monotonic() < deadline:
            code = exited()
            if code is not None:
                raise BenchError(f"the API server exited with code {code}; see {log_path}")
            try:
                if (await client.get("/readyz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass  # not listening yet
            await asyncio.sleep(0.5)
    raise BenchError(
        f"the API at {base_url} did not answer /readyz with 200 within {READY_TIMEOUT_S:.0f} s; "
        f"has `hub infra up` been run (see `hub infra status`)? API log: {log_path}"
    )


# --- the two phases ---------------------------------------------------------------------


def new_client(base_url: str, concurrency: int) -> httpx.AsyncClient:
    """One client for all tasks, with a connection for each, so no task waits for the pool."""
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    return httpx.AsyncClient(base_url=base_url, limits=limits, timeout=REQUEST_TIMEOUT_S)


async def single_client(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    orders: OrderFactory,
    task: str,
    deadline: float,
    stats: PhaseStats,
) -> None:
    """Post one order at a time until the deadline, the way a hotline system forwards calls."""
    n = 0
    while time.perf_counter() < deadline:
        body = orders.order(task, n)
        n += 1
        start = time.perf_counter()
        try:
            response = await client.post(SINGLE_PATH, json=body, headers=headers)
        except httpx.TransportError as exc:
            stats.errors[type(exc).__name__] += 1
            continue
        stats.latencies_s.append(time.perf_counter() - start)
        if response.is_success:
            stats.events_accepted += 1
        else:
            stats.errors[str(response.status_code)] += 1


def count_batch(response: httpx.Response, stats: PhaseStats) -> None:
    """Add a batch answer's counts; an answer we cannot read is an error, not zero events."""
    try:
        counts = response.json()
        accepted = int(counts["accepted"])
    except (ValueError, KeyError, TypeError):
        stats.errors["unreadable-200"] += 1
        return
    stats.events_accepted += accepted
    for name in ("accepted", "updated", "duplicate", "rejected"):
        if isinstance(counts.get(name), int):
            stats.batch_counts[name] += counts[name]


async def batch_client(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    orders: OrderFactory,
    task: str,
    batch_size: int,
    deadline: float,
    stats: PhaseStats,
) -> None:
    """Post lists of orders until the deadline; stop everyone if the endpoint does not exist."""
    n = 0
    while time.perf_counter() < deadline and stats.skipped is None:
        body = [orders.order(task, n + i) for i in range(batch_size)]
        n += batch_size
        start = time.perf_counter()
        try:
            response = await client.post(BATCH_PATH, json=body, headers=headers)
        except httpx.TransportError as exc:
            stats.errors[type(exc).__name__] += 1
            continue
        if response.status_code in (404, 405):
            stats.skipped = "batch endpoint not available"
            return
        stats.latencies_s.append(time.perf_counter() - start)
        if response.status_code == 200:
            count_batch(response, stats)
        else:
            stats.errors[str(response.status_code)] += 1


async def run_single(
    base_url: str, key: str, orders: OrderFactory, args: argparse.Namespace
) -> dict[str, Any]:
    stats = PhaseStats()
    headers = {"X-API-Key": key}
    async with new_client(base_url, args.concurrency) as client:
        started, cpu = time.perf_counter(), time.process_time()
        deadline = started + args.seconds
        async with asyncio.TaskGroup() as tasks:
            for task in range(args.concurrency):
                tasks.create_task(
                    single_client(client, headers, orders, f"s{task}", deadline, stats)
                )
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    return summarize(stats, elapsed, cpu, concurrency=args.concurrency)


async def run_batch(
    base_url: str, key: str, orders: OrderFactory, args: argparse.Namespace
) -> dict[str, Any]:
    stats = PhaseStats()
    headers = {"X-API-Key": key}
    concurrency = min(MAX_BATCH_CONCURRENCY, args.concurrency)
    async with new_client(base_url, concurrency) as client:
        started, cpu = time.perf_counter(), time.process_time()
        deadline = started + args.seconds
        async with asyncio.TaskGroup() as tasks:
            for task in range(concurrency):
                tasks.create_task(
                    batch_client(
                        client, headers, orders, f"b{task}", args.batch_size, deadline, stats
                    )
                )
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    if stats.skipped is not None:
        return {"skipped": stats.skipped}
    result = summarize(stats, elapsed, cpu, concurrency=concurrency)
    result["batch_size"] = args.batch_size
    result["batch_counts"] = dict(stats.batch_counts)
    return result


async def measure(
    base_url: str, key: str, run_id: str, args: argparse.Namespace, server: subprocess.Popen[bytes]
) -> dict[str, dict[str, Any]]:
    """Both phases on one server; the single phase first, so a missing batch endpoint is late."""
    await wait_ready(base_url, server.poll, log_path_for(args.out))
    orders = OrderFactory(run_id)
    return {
        "single": await run_single(base_url, key, orders, args),
        "batch": await run_batch(base_url, key, orders, args),
    }


# --- numbers and facts --------------------------------------------------------------------


def percentile(sorted_values: list[float], pct: float) -> float:
    """Nearest-rank percentile: always a latency that was actually observed."""
    rank = max(math.ceil(pct / 100 * len(sorted_values)), 1)
    return sorted_values[rank - 1]


def summarize(stats: PhaseStats, elapsed: float, cpu: float, *, concurrency: int) -> dict[str, Any]:
    latencies = sorted(stats.latencies_s)
    result: dict[str, Any] = {
        "concurrency": concurrency,
        "elapsed_s": round(elapsed, 3),
        # The client shares the machine with the API: if this nears elapsed_s, the client limits.
        "client_cpu_s": round(cpu, 3),
        "requests": stats.requests,
        "events_accepted": stats.events_accepted,
        "errors": dict(stats.errors),
        "events_per_s": round(stats.events_accepted / elapsed, 1) if elapsed > 0 else 0.0,
        "requests_per_s": round(stats.requests / elapsed, 1) if elapsed > 0 else 0.0,
    }
    if latencies:
        result["latency_ms"] = {
            name: round(percentile(latencies, pct) * 1000, 2)
            for name, pct in (("p50", 50), ("p90", 90), ("p99", 99), ("max", 100))
        }
    return result


def total_memory_bytes() -> int | None:
    with open("/proc/meminfo", encoding="ascii") as meminfo:
        for line in meminfo:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    return None


def machine_facts(settings: Settings) -> dict[str, Any]:
    """Enough to tell whether two result files are comparable."""
    hosts = [part.rsplit(":", 1)[0].strip() for part in settings.bootstrap.split(",")]
    return {
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "memory_total_bytes": total_memory_bytes(),
        "python": platform.python_version(),
        "kafka_bootstrap": settings.bootstrap,
        "kafka_local": all(host in LOOPBACK_HOSTS for host in hosts),
        "kafka_started_by_hub": settings.uses_local_kafka,
    }


def child_pids(pid: int) -> list[int]:
    """Direct children of ``pid`` (uvicorn's workers), from every thread's children list."""
    children: list[int] = []
    for task_dir in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children += [int(c) for c in (task_dir / "children").read_text().split()]
        except OSError:
            continue  # the thread ended meanwhile
    return sorted(set(children))


def vm_hwm_bytes(pid: int) -> int | None:
    """Peak resident set size of a live process (VmHWM), or None if it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def api_peak_rss(server_pid: int) -> dict[str, Any]:
    """Read before stopping the server: VmHWM disappears with the process."""
    processes = {pid: vm_hwm_bytes(pid) for pid in [server_pid, *child_pids(server_pid)]}
    total = sum(value for value in processes.values() if value is not None)
    return {
        "peak_rss_bytes": total,
        "peak_rss_mib": round(total / 2**20, 1),
        "processes": [{"pid": pid, "vm_hwm_bytes": value} for pid, value in processes.items()],
    }


# --- output -------------------------------------------------------------------------------


def log_path_for(out: Path) -> Path:
    return out.with_suffix(".api.log")


def print_summary(report: dict[str, Any], out: Path) -> None:
    for name, phase in report["phases"].items():
        if "skipped" in phase:
            print(f"{name:<6} skipped: {phase['skipped']}")
            continue
        lat = phase.get("latency_ms", {})
        errors = ", ".join(f"{k}×{v}" for k, v in phase["errors"].items()) or "none"
        print(
            f"{name:<6} {phase['events_per_s']:>9.1f} events/s  "
            f"{phase['requests']} requests, {phase['events_accepted']} events accepted, "
            f"errors: {errors}\n"
            f"       latency ms p50 {lat.get('p50')}  p90 {lat.get('p90')}  "
            f"p99 {lat.get('p99')}  max {lat.get('max')}  "
            f"(client CPU {phase['client_cpu_s']} s of {phase['elapsed_s']} s)"
        )
    rss = report["api_server"]
    print(f"API peak RSS {rss['peak_rss_mib']} MiB over {len(rss['processes'])} process(es)")
    print(f"written to {out}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started_at = datetime.now(CHINA_TZ)
    run_id = secrets.token_hex(3)
    args.out = args.out or RESULTS_DIR / f"intake-{started_at:%Y%m%d-%H%M%S}.json"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    # Set before Settings() and inherited by the server: this run's topics are its own.
    os.environ["HUB_TOPIC_PREFIX"] = f"bench-{run_id}."
    settings = Settings()
    port = free_port()
    command = api_command(port, args.workers)
    # Even where a shell started us ignoring SIGINT (`… &`): Ctrl-C and `kill` both clean up.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, sigterm_as_sigint)
    try:
        key = asyncio.run(prepare(settings))
        server = start_api(command, dict(os.environ), log_path_for(args.out))
        try:
            phases = asyncio.run(measure(f"http://127.0.0.1:{port}", key, run_id, args, server))
            rss = api_peak_rss(server.pid)
        finally:
            stop_api(server)
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bench: interrupted; the API server was stopped", file=sys.stderr)
        return 130
    report = {
        "benchmark": "intake",
        "run_id": run_id,
        "started_at": started_at.isoformat(timespec="seconds"),
        "machine": machine_facts(settings),
        "parameters": {
            "seconds": args.seconds,
            "concurrency": args.concurrency,
            "batch_size": args.batch_size,
            "batch_concurrency": min(MAX_BATCH_CONCURRENCY, args.concurrency),
            "workers": args.workers,
            "topic_prefix": settings.topic_prefix,
            "api_command": command[1:],
        },
        "phases": phases,
        "api_server": rss,
    }
    args.out.write_text(json.dumps(report, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    print_summary(report, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
