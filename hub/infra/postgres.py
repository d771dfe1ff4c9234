"""PostgreSQL 15 from Debian's packages: the ``15/main`` cluster, with the hub's role and database.

``up`` installs the packages if missing and starts the cluster if it is down, remembering that it
did so; ``down`` stops the cluster only if ``up`` started it.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from urllib.parse import urlsplit

from hub.infra.process import InfraError, port_answers, run

VERSION, CLUSTER = "15", "main"
HOST, PORT = "127.0.0.1", 5432


def _started_marker(state_dir: Path) -> Path:
    return state_dir / "postgres.started-by-hub"


def ensure_installed() -> None:
    if shutil.which("pg_ctlcluster") and Path(f"/usr/lib/postgresql/{VERSION}/bin").exists():
        return
    if os.geteuid() != 0:
        raise InfraError(f"PostgreSQL {VERSION} is missing; install it: apt-get install postgresql")
    env_noninteractive = ["env", "DEBIAN_FRONTEND=noninteractive"]
    run([*env_noninteractive, "apt-get", "update", "-q"])
    run([*env_noninteractive, "apt-get", "install", "-y", "-q", f"postgresql-{VERSION}"])


def _cluster_state() -> str | None:
    """'online', 'down', or None when the cluster does not exist."""
    for line in run(["pg_lsclusters", "--no-header"]).splitlines():
        fields = line.split()
        if fields[:2] == [VERSION, CLUSTER]:
            return fields[3]
    return None


def _psql(sql: str, **variables: str) -> str:
    """Run SQL as the postgres superuser; values go in as psql variables (:'name', :"name")."""
    assignments = [f"--set={name}={value}" for name, value in variables.items()]
    return run(
        ["runuser", "-u", "postgres", "--", "psql", "-X", "-q", "-t", "-A",
         "--set=ON_ERROR_STOP=1", "-p", str(PORT), *assignments],
        stdin=sql,
    ).strip()  # fmt: skip


def ensure_role_and_database(dsn: str) -> None:
    """Create the login role (allowed to create and force-drop test databases) and its database."""
    parts = urlsplit(dsn)
    user, password, database = parts.username, parts.password, parts.path.lstrip("/")
    if not (user and password and database):
        raise InfraError(f"cannot derive role and database from the local DSN {dsn!r}")
    names = {"role": user, "password": password, "db": database}
    if _psql("SELECT 1 FROM pg_roles WHERE rolname = :'role'", **names) != "1":
        _psql("CREATE ROLE :\"role\" LOGIN CREATEDB PASSWORD :'password'", **names)
    # Tests and benches drop their databases WITH (FORCE); an autovacuum worker inside one has
    # no role, and terminating it needs pg_signal_backend (CI failed on exactly that once).
    _psql('GRANT pg_signal_backend TO :"role"', **names)
    if _psql("SELECT 1 FROM pg_database WHERE datname = :'db'", **names) != "1":
        _psql('CREATE DATABASE :"db" OWNER :"role"', **names)


def up(state_dir: Path, dsn: str) -> str:
    ensure_installed()
    state = _cluster_state()
    if state is None:
        run(["pg_createcluster", VERSION, CLUSTER, "--port", str(PORT)])
        state = "down"
    result = "already running"
    if state != "online":
        run(["pg_ctlcluster", VERSION, CLUSTER, "start"])
        state_dir.mkdir(parents=True, exist_ok=True)
        _started_marker(state_dir).touch()
        result = "started"
    ensure_role_and_database(dsn)
    return result


def down(state_dir: Path) -> str:
    marker = _started_marker(state_dir)
    if not marker.exists():
        running = _cluster_state() == "online"
        return "left running (not started by hub)" if running else "not running"
    if _cluster_state() == "online":
        run(["pg_ctlcluster", VERSION, CLUSTER, "stop"])
    marker.unlink()
    return "stopped"


def restart() -> None:
    """Restart the cluster, disconnecting every client (fault tests: ``bench/faults.py``)."""
    run(["pg_ctlcluster", VERSION, CLUSTER, "restart", "--mode", "fast"])


def status(state_dir: Path) -> tuple[bool, str]:
    owner = "started by hub" if _started_marker(state_dir).exists() else "not started by hub"
    return port_answers(HOST, PORT), f"{HOST}:{PORT} (cluster {VERSION}/{CLUSTER}, {owner})"
