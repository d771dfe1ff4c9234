"""Small helpers shared by the Kafka and PostgreSQL controllers."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Sequence


class InfraError(RuntimeError):
    """A local service could not be installed, started or stopped; the message says why."""


def run(cmd: Sequence[str], *, stdin: str | None = None) -> str:
    """Run a command, returning its stdout; raise InfraError with its output when it fails."""
    result = subprocess.run(  # noqa: S603
        list(cmd), input=stdin, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise InfraError(
            f"{' '.join(cmd)} exited {result.returncode}:\n{result.stdout}{result.stderr}"
        )
    return result.stdout


def port_answers(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_for_port(host: str, port: int, *, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if port_answers(host, port):
            return
        time.sleep(0.2)
    raise InfraError(f"{what} did not answer on {host}:{port} within {seconds:.0f}s")


def split_host_port(address: str, default_port: int) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    if not host:
        return address, default_port
    return host, int(port)
