"""Benchmark of the civic intake API: how many 12345 work orders per second it makes durable.

Starts its own API server on a free port, with a topic prefix of its own so benchmark records
never mix with anyone else's, then measures two phases against it:

* ``single``: many concurrent clients each POST one order at a time, driven by ``wrk`` (C and
  LuaJIT, so the load generator is not the limit) or, with ``--client httpx``, by Python;
* ``batch``: a few concurrent httpx clients POST lists of orders to the ``:batch`` endpoint.

Each phase is preceded by an uncounted warm-up. The run's Kafka topics are deleted at the end.

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
import resource
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from functools import partial
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
WARMUP_S = 2.0
WRK_RESULT_MARK = "BENCH-WRK-RESULT "
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
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
    statuses: Counter[str] = field(default_factory=Counter)
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


def json_body(value: Any) -> bytes:
    """Compact UTF-8 JSON, as a hotline system sends it; wrk sends the very same bytes."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.intake", description=__doc__)
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each phase")
    parser.add_argument("--concurrency", type=int, default=64, help="clients in the single phase")
    parser.add_argument("--batch-size", type=int, default=200, help="orders per batch request")
    parser.add_argument("--workers", type=int, default=1, help="API processes (uvicorn workers)")
    parser.add_argument(
        "--client",
        choices=("wrk", "httpx"),
        default="wrk",
        help="load generator of the single phase (wrk is installed with apt-get if missing)",
    )
    parser.add_argument("--wrk-threads", type=int, default=2, help="wrk threads (-t)")
    parser.add_argument(
        "--warmup", type=float, default=WARMUP_S, help="uncounted seconds before each phase"
    )
    parser.add_argument("--out", type=Path, help="result JSON (default bench/results/intake-…)")
    args = parser.parse_args(argv)
    for name in ("seconds", "concurrency", "batch_size", "workers", "wrk_threads"):
        if getattr(args, name) <= 0:
            parser.error(f"--{name.replace('_', '-')} must be positive")
    if args.warmup < 0:
        parser.error("--warmup must not be negative")
    if args.client == "wrk" and args.wrk_threads > args.concurrency:
        parser.error("--wrk-threads must not exceed --concurrency (each thread needs a connection)")
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


# --- the load generator of the single phase: wrk ----------------------------------------


def run_quietly(command: list[str]) -> str | None:
    """Run an apt-get step; None if it worked, else a one-line reason."""
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        done = subprocess.run(  # noqa: S603 - fixed apt-get arguments
            command,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"`{' '.join(command)}` failed: {exc}"
    if done.returncode != 0:
        lines = (done.stderr.strip() or done.stdout.strip()).splitlines()
        return f"`{' '.join(command)}` exited {done.returncode}: {lines[-1] if lines else ''}"
    return None


def find_or_install_wrk() -> tuple[str | None, str | None]:
    """(wrk's path or None, what was done or why it is missing), installing Debian's ``wrk``."""
    path = shutil.which("wrk")
    if path:
        return path, None
    print("bench: wrk is not on PATH; installing it with `apt-get install -y wrk`", flush=True)
    error = run_quietly(["apt-get", "install", "-y", "wrk"])
    if error:
        print(f"bench: {error}; running `apt-get update` and trying again", flush=True)
        error = run_quietly(["apt-get", "update"]) or run_quietly(
            ["apt-get", "install", "-y", "wrk"]
        )
    path = shutil.which("wrk")
    if path:
        print(f"bench: installed {path}", flush=True)
        return path, "wrk was not on PATH; installed with `apt-get install -y wrk`"
    return None, error or "apt-get install -y wrk succeeded, yet wrk is not on PATH"


def lua_string(text: str) -> str:
    """A Lua 5.1 string literal: printable ASCII as is, every other byte as ``\\ddd``."""
    chars = [
        chr(byte) if 32 <= byte < 127 and byte not in b'"\\' else f"\\{byte:03d}"
        for byte in text.encode()
    ]
    return '"' + "".join(chars) + '"'


WRK_SCRIPT = """\
-- Generated by bench/intake.py: one unique 12345 work order per request.
local path = {path}
local headers = {{["X-API-Key"] = {key}, ["Content-Type"] = "application/json"}}
local prefix = {prefix}
-- Each body is part1 .. order_no .. part2 .. call_time .. part3.
local templates = {{
{templates}
}}
local threads = {{}}

function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

local counter, last_second, stamp = 0, -1, ""

function init(args)
  ok, non2xx, statuses = 0, 0, {{}}
  math.randomseed(os.time() + 7919 * id)
end

function request()
  counter = counter + 1
  local now = os.time()
  if now ~= last_second then
    last_second = now
    stamp = os.date("!%Y-%m-%dT%H:%M:%S", now + 8 * 3600) .. "+08:00"
  end
  local t = templates[math.random(#templates)]
  local body = t[1] .. prefix .. id .. "-" .. counter .. t[2] .. stamp .. t[3]
  return wrk.format("POST", path, headers, body)
end

function response(status, headers, body)
  if status >= 200 and status < 300 then ok = ok + 1 else non2xx = non2xx + 1 end
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local ok_all, non2xx_all, by_status = 0, 0, {{}}
  for _, thread in ipairs(threads) do
    ok_all = ok_all + thread:get("ok")
    non2xx_all = non2xx_all + thread:get("non2xx")
    for status, n in pairs(thread:get("statuses")) do
      by_status[status] = (by_status[status] or 0) + n
    end
  end
  local parts = {{}}
  for status, n in pairs(by_status) do
    table.insert(parts, string.format('"%d":%d', status, n))
  end
  local e = summary.errors
  io.write({mark}, string.format(
    '{{"duration_us":%d,"requests":%d,"ok":%d,"non2xx":%d,"statuses":{{%s}},' ..
    '"socket_errors":{{"connect":%d,"read":%d,"write":%d,"timeout":%d}},' ..
    '"latency_us":{{"p50":%d,"p90":%d,"p99":%d,"max":%d}}}}\\n',
    summary.duration, summary.requests, ok_all, non2xx_all, table.concat(parts, ","),
    e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
"""


def wrk_script(key: str, order_prefix: str, orders: OrderFactory, variants: int = 200) -> str:
    """The Lua that makes each wrk request a unique order with a realistic body (the same
    fields, places and complaints as the httpx client's), the parts pre-encoded in Python."""
    rows = []
    for _ in range(variants):
        order = orders.order("template", 0)
        order["order_no"], order["call_time"] = "@@ORDER_NO@@", "@@CALL_TIME@@"
        head, tail = json_body(order).decode().split("@@ORDER_NO@@")
        middle, end = tail.split("@@CALL_TIME@@")
        rows.append("  {" + ", ".join(lua_string(part) for part in (head, middle, end)) + "},")
    return WRK_SCRIPT.format(
        path=lua_string(SINGLE_PATH),
        key=lua_string(key),
        prefix=lua_string(order_prefix),
        templates="\n".join(rows),
        mark=lua_string(WRK_RESULT_MARK),
    )


def children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


async def run_wrk(
    wrk: str,
    base_url: str,
    key: str,
    orders: OrderFactory,
    order_prefix: str,
    seconds: float,
    args: argparse.Namespace,
) -> dict[str, Any]:
    """One wrk run (whole seconds: wrk's -d takes no fractions); its parsed result line."""
    with tempfile.TemporaryDirectory(prefix="bench-wrk-") as tmp:
        script = Path(tmp) / "intake.lua"
        script.write_text(wrk_script(key, order_prefix, orders), encoding="utf-8")
        command = [
            wrk,
            f"-t{args.wrk_threads}",
            f"-c{args.concurrency}",
            f"-d{max(1, math.ceil(seconds))}s",
            f"--timeout={REQUEST_TIMEOUT_S:.0f}s",
            "--latency",
            "-s",
            str(script),
            base_url + SINGLE_PATH,
        ]
        cpu = children_cpu_s()
        process = await asyncio.create_subprocess_exec(
            *command,
            stdin=subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            out, err = await process.communicate()
        finally:  # also on Ctrl-C: never leave wrk running
            if process.returncode is None:
                process.kill()
                await process.wait()
        cpu = children_cpu_s() - cpu
    for line in out.decode(errors="replace").splitlines():
        if line.startswith(WRK_RESULT_MARK):
            result: dict[str, Any] = json.loads(line.removeprefix(WRK_RESULT_MARK))
            result["client_cpu_s"] = cpu
            return result
    raise BenchError(
        f"wrk exited {process.returncode} without a result line; stderr: "
        f"{err.decode(errors='replace').strip()[-2000:]}"
    )


def summarize_wrk(result: dict[str, Any], *, concurrency: int, threads: int) -> dict[str, Any]:
    """wrk's result in the httpx phase's shape; events are 2xx answers (202 new, 200 repeat)."""
    elapsed = result["duration_us"] / 1e6
    errors = {status: n for status, n in result["statuses"].items() if not status.startswith("2")}
    errors |= {f"socket-{name}": n for name, n in result["socket_errors"].items() if n}
    return {
        "client": "wrk",
        "wrk_threads": threads,
        "concurrency": concurrency,
        "elapsed_s": round(elapsed, 3),
        "client_cpu_s": round(result["client_cpu_s"], 3),
        "requests": result["requests"],
        "events_accepted": result["ok"],
        "statuses": dict(sorted(result["statuses"].items())),
        "errors": errors,
        "events_per_s": round(result["ok"] / elapsed, 1) if elapsed > 0 else 0.0,
        "requests_per_s": round(result["requests"] / elapsed, 1) if elapsed > 0 else 0.0,
        "latency_ms": {
            name: round(result["latency_us"][name] / 1000, 2)
            for name in ("p50", "p90", "p99", "max")
        },
    }


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
        body = json_body(orders.order(task, n))
        n += 1
        start = time.perf_counter()
        try:
            response = await client.post(SINGLE_PATH, content=body, headers=headers)
        except httpx.TransportError as exc:
            stats.errors[type(exc).__name__] += 1
            continue
        stats.latencies_s.append(time.perf_counter() - start)
        stats.statuses[str(response.status_code)] += 1
        if response.is_success:
            stats.events_accepted += 1
        else:
            stats.errors[str(response.status_code)] += 1


def count_batch(response: httpx.Response, batch_size: int, stats: PhaseStats) -> None:
    """Add a batch answer's counts. Events are the items the API holds durably (accepted,
    updated or duplicate, as 2xx in the single phase); rejected items are errors, and an
    answer we cannot read counts as an error, never as zero or as a whole batch."""
    try:
        counts = response.json()
        held = {name: int(counts[name]) for name in ("accepted", "updated", "duplicate")}
        rejected = int(counts["rejected"])
    except (ValueError, KeyError, TypeError):
        stats.errors["unreadable-200"] += 1
        return
    if sum(held.values()) + rejected != batch_size:
        stats.errors["batch-count-mismatch"] += 1
    stats.events_accepted += sum(held.values())
    stats.batch_counts.update({**held, "rejected": rejected})
    if rejected:
        stats.errors["rejected-item"] += rejected


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
        body = json_body([orders.order(task, n + i) for i in range(batch_size)])
        n += batch_size
        start = time.perf_counter()
        try:
            response = await client.post(BATCH_PATH, content=body, headers=headers)
        except httpx.TransportError as exc:
            stats.errors[type(exc).__name__] += 1
            continue
        if response.status_code in (404, 405):
            stats.skipped = "batch endpoint not available"
            return
        stats.latencies_s.append(time.perf_counter() - start)
        stats.statuses[str(response.status_code)] += 1
        if response.status_code == 200:
            count_batch(response, batch_size, stats)
        else:
            stats.errors[str(response.status_code)] += 1


def json_headers(key: str) -> dict[str, str]:
    return {"X-API-Key": key, "Content-Type": "application/json"}


async def run_single_httpx(
    base_url: str, key: str, orders: OrderFactory, tag: str, seconds: float, concurrency: int
) -> dict[str, Any]:
    stats = PhaseStats()
    headers = json_headers(key)
    async with new_client(base_url, concurrency) as client:
        started, cpu = time.perf_counter(), time.process_time()
        deadline = started + seconds
        async with asyncio.TaskGroup() as tasks:
            for task in range(concurrency):
                tasks.create_task(
                    single_client(client, headers, orders, f"{tag}{task}", deadline, stats)
                )
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    return {"client": "httpx", **summarize(stats, elapsed, cpu, concurrency=concurrency)}


async def run_batch(
    base_url: str, key: str, orders: OrderFactory, tag: str, seconds: float, batch_size: int,
    concurrency: int,
) -> dict[str, Any]:  # fmt: skip
    stats = PhaseStats()
    headers = json_headers(key)
    async with new_client(base_url, concurrency) as client:
        started, cpu = time.perf_counter(), time.process_time()
        deadline = started + seconds
        async with asyncio.TaskGroup() as tasks:
            for task in range(concurrency):
                tasks.create_task(
                    batch_client(
                        client, headers, orders, f"{tag}{task}", batch_size, deadline, stats
                    )
                )
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    if stats.skipped is not None:
        return {"skipped": stats.skipped}
    result = {"client": "httpx", **summarize(stats, elapsed, cpu, concurrency=concurrency)}
    result["batch_size"] = batch_size
    result["batch_counts"] = dict(stats.batch_counts)
    return result


async def with_cpu_accounting(
    server_pid: int, phase: Callable[[], Awaitable[dict[str, Any]]]
) -> dict[str, Any]:
    """Run a phase and add the CPU the API (all its processes) and the machine used meanwhile,
    so a reader sees whether the API, the client or the machine was the limit."""
    api_before, machine_before = api_cpu_s(server_pid), machine_busy_s()
    result = await phase()
    if "skipped" in result:
        return result
    api_used, machine_used = api_cpu_s(server_pid) - api_before, machine_busy_s() - machine_before
    capacity = (os.cpu_count() or 1) * result["elapsed_s"]
    result["api_cpu_s"] = round(api_used, 3)
    result["machine_cpu_busy_s"] = round(machine_used, 3)
    result["machine_cpu_busy_pct"] = round(100 * machine_used / capacity, 1) if capacity else None
    return result


async def measure(
    base_url: str,
    key: str,
    run_id: str,
    args: argparse.Namespace,
    server: subprocess.Popen[bytes],
    wrk: str | None,
) -> dict[str, dict[str, Any]]:
    """Both phases on one server, each after a warm-up whose orders are not counted; the
    single phase first, so a missing batch endpoint is late."""
    await wait_ready(base_url, server.poll, log_path_for(args.out))
    orders = OrderFactory(run_id)
    batch_concurrency = min(MAX_BATCH_CONCURRENCY, args.concurrency)

    async def single(tag: str, seconds: float) -> dict[str, Any]:
        if wrk is None:
            return await run_single_httpx(base_url, key, orders, tag, seconds, args.concurrency)
        prefix = f"BENCH-{run_id}-{tag}"
        result = await run_wrk(wrk, base_url, key, orders, prefix, seconds, args)
        return summarize_wrk(result, concurrency=args.concurrency, threads=args.wrk_threads)

    async def batch(tag: str, seconds: float) -> dict[str, Any]:
        return await run_batch(
            base_url, key, orders, tag, seconds, args.batch_size, batch_concurrency
        )

    phases: dict[str, dict[str, Any]] = {}
    for name, run, tag in (("single", single, "s"), ("batch", batch, "b")):
        if args.warmup > 0:
            warm = await run(f"w{tag}", args.warmup)
            if "skipped" in warm:
                phases[name] = warm
                continue
        phases[name] = await with_cpu_accounting(server.pid, partial(run, tag, args.seconds))
    return phases


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
        "statuses": dict(sorted(stats.statuses.items())),
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


def descendants(pid: int) -> list[int]:
    """``pid``'s children, their children, and so on."""
    found: list[int] = []
    for child in child_pids(pid):
        found += [child, *descendants(child)]
    return found


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds a live process has used so far (0 if it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) ": state is fields[0]
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime


def api_cpu_s(server_pid: int) -> float:
    """CPU seconds of the API: the server process and all its descendants (uvicorn workers)."""
    return sum(process_cpu_s(pid) for pid in [server_pid, *descendants(server_pid)])


def machine_busy_s() -> float:
    """CPU seconds every core of the machine has spent not idle since boot (/proc/stat)."""
    with open("/proc/stat", encoding="ascii") as stat:
        ticks = [int(value) for value in stat.readline().split()[1:]]
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)  # idle + iowait
    # guest time is already counted in user and nice
    return (sum(ticks[:8]) - idle) / CLOCK_TICKS


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
    processes = {pid: vm_hwm_bytes(pid) for pid in [server_pid, *descendants(server_pid)]}
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
            f"p99 {lat.get('p99')}  max {lat.get('max')}\n"
            f"       CPU s over {phase['elapsed_s']} s: API {phase['api_cpu_s']}, "
            f"client ({phase['client']}) {phase['client_cpu_s']}, "
            f"whole machine {phase['machine_cpu_busy_s']} "
            f"({phase['machine_cpu_busy_pct']}% of its {os.cpu_count()} cores)"
        )
    rss = report["api_server"]
    print(f"API peak RSS {rss['peak_rss_mib']} MiB over {len(rss['processes'])} process(es)")
    print(f"written to {out}")


async def delete_own_topics(settings: Settings) -> list[str]:
    """Delete the topics under this run's own prefix, and nothing else."""
    from hub.bus import delete_topics_with_prefix

    assert settings.topic_prefix.startswith("bench-"), settings.topic_prefix
    return await delete_topics_with_prefix(settings.bootstrap, settings.topic_prefix)


def clean_up_topics(settings: Settings) -> dict[str, Any]:
    try:
        deleted = asyncio.run(delete_own_topics(settings))
    except Exception as exc:  # a leftover topic is not worth losing the result over
        print(f"bench: could not delete the {settings.topic_prefix}* topics: {exc!r}")
        return {"prefix": settings.topic_prefix, "deleted": [], "error": repr(exc)}
    print(f"deleted {len(deleted)} topics {settings.topic_prefix}*")
    return {"prefix": settings.topic_prefix, "deleted": deleted}


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
    client: dict[str, Any] = {"requested": args.client}
    wrk = None
    if args.client == "wrk":
        wrk, note = find_or_install_wrk()
        if wrk is None:
            client["fallback_reason"] = f"wrk unavailable, single phase ran on httpx: {note}"
            print(f"bench: {client['fallback_reason']}")
        elif note:
            client["note"] = note
        client["wrk"] = wrk
    client["single_phase"] = "wrk" if wrk else "httpx"
    # Even where a shell started us ignoring SIGINT (`… &`): Ctrl-C and `kill` both clean up.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, sigterm_as_sigint)
    try:
        try:
            key = asyncio.run(prepare(settings))
            server = start_api(command, dict(os.environ), log_path_for(args.out))
            try:
                base_url = f"http://127.0.0.1:{port}"
                phases = asyncio.run(measure(base_url, key, run_id, args, server, wrk))
                rss = api_peak_rss(server.pid)
            finally:
                stop_api(server)
        finally:  # after the server stopped: it holds no metadata for them any more
            topics = clean_up_topics(settings)
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
            "warmup_s": args.warmup,
            "concurrency": args.concurrency,
            "client": client,
            "wrk_threads": args.wrk_threads if wrk else None,
            "batch_size": args.batch_size,
            "batch_concurrency": min(MAX_BATCH_CONCURRENCY, args.concurrency),
            "workers": args.workers,
            "topic_prefix": settings.topic_prefix,
            "api_command": command[1:],
        },
        "phases": phases,
        "api_server": rss,
        "topics": topics,
    }
    args.out.write_text(json.dumps(report, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    print_summary(report, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
