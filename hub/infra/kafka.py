"""A single-node Apache Kafka 4 broker in KRaft mode, from jars Maven Central serves.

Layout under ``<state_dir>/kafka``: ``libs/`` (jars, fetched once per pom version),
``data/`` (formatted once), ``server.properties``, ``kafka.log``, ``kafka.pid``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import time
import uuid
from base64 import urlsafe_b64encode
from dataclasses import dataclass
from pathlib import Path

from hub.infra.process import InfraError, port_answers, run, wait_for_port

POM = Path(__file__).with_name("kafka-pom.xml")
HOST, PORT, CONTROLLER_PORT = "127.0.0.1", 9092, 9093
HEAP = "-Xmx1g"

SERVER_PROPERTIES = """\
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers={host}:{controller_port}
listeners=PLAINTEXT://{host}:{port},CONTROLLER://{host}:{controller_port}
advertised.listeners=PLAINTEXT://{host}:{port}
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs={data}
num.partitions=4
# One node: every internal topic has one replica.
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
# Consumers join at once instead of waiting 3 s for company that never comes.
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=true
message.max.bytes=1048588
"""

LOG4J2_PROPERTIES = """\
status = warn
appender.file.type = File
appender.file.name = file
appender.file.fileName = {log}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = info
rootLogger.appenderRef.file.ref = file
logger.kafka.name = org.apache.kafka
logger.kafka.level = warn
"""


@dataclass(frozen=True)
class KafkaPaths:
    root: Path

    @property
    def libs(self) -> Path:
        return self.root / "libs"

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def pid(self) -> Path:
        return self.root / "kafka.pid"

    @property
    def log(self) -> Path:
        return self.root / "kafka.log"

    @property
    def properties(self) -> Path:
        return self.root / "server.properties"

    @property
    def log4j(self) -> Path:
        return self.root / "log4j2.properties"


def _pom_digest() -> str:
    return hashlib.sha256(POM.read_bytes()).hexdigest()[:16]


def ensure_jars(paths: KafkaPaths) -> None:
    """Copy the broker's jars from Maven Central once per pom version."""
    marker = paths.libs / f".complete-{_pom_digest()}"
    if marker.exists():
        return
    if shutil.which("mvn") is None or shutil.which("java") is None:
        raise InfraError("Kafka needs Java 17+ and Maven on PATH (apt-get install maven)")
    shutil.rmtree(paths.libs, ignore_errors=True)
    paths.libs.mkdir(parents=True)
    run(
        [
            "mvn", "-q", "-B", "-f", str(POM), "dependency:copy-dependencies",
            f"-DoutputDirectory={paths.libs}", "-DincludeScope=runtime",
        ]
    )  # fmt: skip
    marker.touch()


def _java(paths: KafkaPaths, *args: str) -> list[str]:
    return [
        "java",
        HEAP,
        f"-Dlog4j2.configurationFile={paths.log4j}",
        "-cp",
        f"{paths.libs}/*",
        *args,
    ]


def ensure_formatted(paths: KafkaPaths) -> None:
    """Write the configuration and format the KRaft log directory, once."""
    paths.root.mkdir(parents=True, exist_ok=True)
    paths.properties.write_text(
        SERVER_PROPERTIES.format(
            host=HOST, port=PORT, controller_port=CONTROLLER_PORT, data=paths.data
        )
    )
    paths.log4j.write_text(LOG4J2_PROPERTIES.format(log=paths.log))
    if (paths.data / "meta.properties").exists():
        return
    cluster_id = urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
    run(
        _java(
            paths,
            "kafka.tools.StorageTool",
            "format",
            "--standalone",
            "-t",
            cluster_id,
            "-c",
            str(paths.properties),
        )
    )


def _our_pid(paths: KafkaPaths) -> int | None:
    """The broker's pid if the process we started is still alive."""
    try:
        pid = int(paths.pid.read_text())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return None
    return pid if b"kafka.Kafka" in cmdline else None


def up(paths: KafkaPaths) -> str:
    if _our_pid(paths) is not None:
        wait_for_port(HOST, PORT, seconds=60, what="Kafka")
        return "already running"
    if port_answers(HOST, PORT):
        return "already running (started elsewhere; left alone)"
    ensure_jars(paths)
    ensure_formatted(paths)
    with open(paths.root / "kafka.out", "ab") as out:
        proc = subprocess.Popen(  # noqa: S603
            _java(paths, "kafka.Kafka", str(paths.properties)),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # outlives the CLI that started it
        )
    paths.pid.write_text(str(proc.pid))
    try:
        wait_for_port(HOST, PORT, seconds=90, what="Kafka")
    except InfraError as exc:
        raise InfraError(f"{exc}; see {paths.log} and {paths.root / 'kafka.out'}") from exc
    return "started"


def down(paths: KafkaPaths) -> str:
    pid = _our_pid(paths)
    if pid is None:
        paths.pid.unlink(missing_ok=True)
        return "not running (nothing of ours to stop)"
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and _our_pid(paths) is not None:
        time.sleep(0.2)
    if _our_pid(paths) is not None:
        os.kill(pid, signal.SIGKILL)
    paths.pid.unlink(missing_ok=True)
    return "stopped"


def status(paths: KafkaPaths) -> tuple[bool, str]:
    answers = port_answers(HOST, PORT)
    owner = "ours" if _our_pid(paths) is not None else "not ours" if answers else "-"
    return answers, f"{HOST}:{PORT} ({owner})"
