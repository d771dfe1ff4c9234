"""Logical Kafka topic names: a contract between the API, the workers and outside consumers.

Each process prefixes them with ``HUB_TOPIC_PREFIX`` (empty in production) via
``Settings.topic``.
"""

INTAKE_RAW = "intake.raw"
IOT_TELEMETRY = "iot.telemetry"
IOT_ALARMS = "iot.alarms"
EVENTS_ENRICHED = "events.enriched"
INCIDENTS = "incidents"
TICKETS_CHANGES = "tickets.changes"
DEAD_LETTER = "deadletter"
# Internal: correlation's open incidents, per partition of events.enriched (compacted).
CORRELATION_STATE = "correlation.state"
# Internal: the alarm rules' state per device, per partition of iot.telemetry (compacted).
IOT_RULES_STATE = "iot.rules.state"

ALL = (
    INTAKE_RAW,
    IOT_TELEMETRY,
    IOT_ALARMS,
    EVENTS_ENRICHED,
    INCIDENTS,
    TICKETS_CHANGES,
    DEAD_LETTER,
    CORRELATION_STATE,
    IOT_RULES_STATE,
)
COMPACTED = frozenset({CORRELATION_STATE, IOT_RULES_STATE})
