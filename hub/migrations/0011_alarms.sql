-- Alarms from device telemetry: one row per alarm, its changes in alarm_history. At most one
-- active (uncleared) alarm per device and alarm type, enforced by a partial unique index, so
-- two writers can never both open one.

CREATE TABLE alarms (
    alarm_id         uuid PRIMARY KEY,
    device_id        uuid NOT NULL REFERENCES devices (device_id),
    alarm_type       text NOT NULL,
    severity         text NOT NULL CHECK (severity IN ('warning', 'minor', 'major', 'critical')),
    raised_at        timestamptz NOT NULL,
    changed_at       timestamptz NOT NULL,
    cleared_at       timestamptz,
    acknowledged_at  timestamptz,
    acknowledged_by  text,
    value            double precision,
    reason           text NOT NULL
);
CREATE UNIQUE INDEX alarms_one_active ON alarms (device_id, alarm_type) WHERE cleared_at IS NULL;
CREATE INDEX alarms_active ON alarms (raised_at) WHERE cleared_at IS NULL;

CREATE TABLE alarm_history (
    alarm_id  uuid NOT NULL REFERENCES alarms (alarm_id),
    kind      text NOT NULL,
    severity  text,
    at        timestamptz NOT NULL,
    value     double precision,
    reason    text NOT NULL,
    PRIMARY KEY (alarm_id, kind, at)
);
