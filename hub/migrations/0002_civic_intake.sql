-- Civic intake: taxonomy, idempotency receipts, event revisions, dead letters, counters.

CREATE TABLE categories (
    code             text PRIMARY KEY CHECK (code ~ '^[a-z0-9][a-z0-9-]{1,63}$'),
    name             text NOT NULL,
    grp              text NOT NULL,
    department_code  text NOT NULL REFERENCES departments (code),
    priority         text NOT NULL CHECK (priority IN ('urgent', 'high', 'normal', 'low')),
    description      text NOT NULL DEFAULT '',
    -- Open311 service attribute definitions, in the spec's shape
    attributes       jsonb NOT NULL DEFAULT '[]'
);

-- What the edge has accepted, so a repeat is answered 200 without touching Kafka again.
CREATE TABLE intake_receipts (
    source             text NOT NULL,
    external_id        text NOT NULL,
    event_id           uuid NOT NULL,
    payload_hash       text NOT NULL,
    deliveries         integer NOT NULL DEFAULT 1,
    first_received_at  timestamptz NOT NULL DEFAULT now(),
    last_received_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source, external_id)
);
CREATE INDEX intake_receipts_event ON intake_receipts (event_id);
CREATE INDEX intake_receipts_received ON intake_receipts (first_received_at);

ALTER TABLE events
    ADD COLUMN payload_hash     text NOT NULL DEFAULT '',
    ADD COLUMN revision         integer NOT NULL DEFAULT 1,
    ADD COLUMN source_category  text,
    ADD COLUMN updated_at       timestamptz NOT NULL DEFAULT now();
CREATE INDEX events_occurred ON events (occurred_at);
CREATE INDEX events_category_occurred ON events (category, occurred_at);

-- Every version of every event, in order: a changed report is an update, recorded as such.
CREATE TABLE event_revisions (
    event_id      uuid NOT NULL REFERENCES events (event_id),
    revision      integer NOT NULL,
    payload_hash  text NOT NULL,
    record        jsonb NOT NULL,
    stored_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (event_id, revision)
);

CREATE TABLE dead_letters (
    id            bigserial PRIMARY KEY,
    topic         text NOT NULL,
    partition     integer NOT NULL,
    "offset"      bigint NOT NULL,
    source        text,
    stage         text NOT NULL,
    reason        text NOT NULL,
    key           bytea,
    value         bytea NOT NULL,
    failed_at     timestamptz NOT NULL,
    stored_at     timestamptz NOT NULL DEFAULT now(),
    replayed_at   timestamptz,
    replay_count  integer NOT NULL DEFAULT 0,
    UNIQUE (topic, partition, "offset")
);
CREATE INDEX dead_letters_open ON dead_letters (stored_at) WHERE replayed_at IS NULL;

-- Per source and day; the API adds its in-memory counts every few seconds.
CREATE TABLE intake_counters (
    source     text NOT NULL,
    day        date NOT NULL,
    accepted   bigint NOT NULL DEFAULT 0,
    updated    bigint NOT NULL DEFAULT 0,
    duplicate  bigint NOT NULL DEFAULT 0,
    rejected   bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (source, day)
);
