"""All configuration, from the environment (prefix ``HUB_``), in one place."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

LOCAL_KAFKA_BOOTSTRAP = "127.0.0.1:9092"
# A loopback-only development password; production must name its own database URL.
# No TLS on loopback: it would cost a tenth of the API's CPU for nothing.
LOCAL_DATABASE_URL = "postgresql://hub:hub-dev-only@127.0.0.1:5432/hub?sslmode=disable"
_REPO_ROOT = Path(__file__).resolve().parents[1]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HUB_", extra="ignore")

    env: Literal["development", "test", "production"] = "development"
    # Unset means "use the local services `hub infra up` starts"; set means "use these, start none".
    kafka_bootstrap: str | None = None
    database_url: str | None = None
    state_dir: Path = _REPO_ROOT / ".hub"
    packs_dir: Path = _REPO_ROOT / "packs"
    pack: str = "wenzhou"

    # Prefix for every topic and consumer group, so test runs never see each other's data.
    topic_prefix: str = ""
    topic_partitions: int = Field(default=4, ge=1)
    topic_replication: int = Field(default=1, ge=1)

    api_host: str = "127.0.0.1"
    api_port: int = 8000
    api_workers: int = Field(default=1, ge=1)
    # Per-request access lines cost the API about 3% of its CPU; turn on when needed.
    api_access_log: bool = False
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    # Unknown API keys and device tokens a client address may present (HTTP and MQTT): this many
    # at once, then this many per window; beyond, 429 (MQTT: CONNACK refused) until one drains.
    # Counted per process: each of `hub api --workers N` and `hub gateway` counts on its own.
    auth_max_failures: int = Field(default=20, ge=1)
    auth_failure_window_s: float = Field(default=60.0, gt=0)
    # Deeper JSON bodies get 400 before any handler runs; the hub's own documents nest at most
    # 5 levels, and orjson writes at most 254.
    max_json_depth: int = Field(default=64, ge=8, le=254)
    max_batch_items: int = Field(default=500, ge=1, le=5000)
    # How long a request may wait for Kafka's acknowledgement before the caller hears 503.
    kafka_send_timeout_s: float = Field(default=5.0, gt=0)

    # Open311 `GET requests` is public (no key): only these sources' reports are listed there.
    # 120 medical records never are.
    open311_public_sources: list[str] = ["open311", "hotline-12345", "urban-inspection",
                                         "grid-governance"]  # fmt: skip

    worker_batch_size: int = Field(default=500, ge=1)
    worker_batch_window_s: float = Field(default=0.2, gt=0)
    # Messages per second a device may send, sustained and in a burst (ThingsBoard's default
    # device limit is 10 per second); over it: HTTP 429, MQTT PUBACK 0x97.
    device_rate_per_s: float = Field(default=10.0, gt=0)
    device_rate_burst: float = Field(default=20.0, ge=1)
    # The MQTT device gateway (`hub gateway`). ThingsBoard's default payload limit is 64 KiB.
    mqtt_host: str = "127.0.0.1"
    mqtt_port: int = 1883
    mqtt_max_packet_bytes: int = Field(default=65536, ge=1024, le=16 * 1024 * 1024)
    # QoS 1 messages a client may have unacknowledged (MQTT 5 Receive Maximum).
    mqtt_receive_maximum: int = Field(default=100, ge=1, le=65535)
    # Also bounded by the process's open-file limit.
    mqtt_max_connections: int = Field(default=100_000, ge=1)
    # Clients asking for no keep-alive or a longer one get this (MQTT 5 Server Keep Alive).
    mqtt_max_keepalive_s: int = Field(default=300, ge=10, le=65535)
    # A gateway connection speaks for many devices: its own message rate (each device's
    # readings still count against that device's rate).
    mqtt_gateway_rate_per_s: float = Field(default=500.0, gt=0)
    # How often the worker rereads device profiles' alarm rules (an admin's edit applies then).
    iot_rules_refresh_s: float = Field(default=30.0, gt=0)
    # The ops feed starts from PostgreSQL and replays this much of the topics on top (covers
    # records published but not yet stored when it starts).
    ops_replay_s: float = Field(default=120.0, ge=0)
    # How often the worker fires due SLA marks (warnings, breaches, escalations).
    sla_tick_s: float = Field(default=1.0, gt=0)

    @model_validator(mode="after")
    def _no_default_secrets_in_production(self) -> Settings:
        if self.env == "production" and not (self.database_url and self.kafka_bootstrap):
            raise ValueError(
                "HUB_DATABASE_URL and HUB_KAFKA_BOOTSTRAP must be set in production: "
                "the local development defaults carry a well-known password"
            )
        return self

    @property
    def pack_dir(self) -> Path:
        return self.packs_dir / self.pack

    @property
    def uses_local_kafka(self) -> bool:
        return self.kafka_bootstrap is None

    @property
    def uses_local_database(self) -> bool:
        return self.database_url is None

    @property
    def bootstrap(self) -> str:
        return self.kafka_bootstrap or LOCAL_KAFKA_BOOTSTRAP

    @property
    def dsn(self) -> str:
        return self.database_url or LOCAL_DATABASE_URL

    def topic(self, name: str) -> str:
        """The full topic name for a logical topic such as ``intake.raw``."""
        return f"{self.topic_prefix}{name}"


@lru_cache
def get_settings() -> Settings:
    return Settings()
