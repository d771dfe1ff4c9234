-- Foundation: departments, API keys, events, tickets and their audit trail.

CREATE TABLE departments (
    code        text PRIMARY KEY CHECK (code ~ '^[a-z0-9][a-z0-9-]{1,63}$'),
    name        text NOT NULL,
    is_triage   boolean NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL DEFAULT now()
);
-- At most one triage department: the queue for everything no rule routes.
CREATE UNIQUE INDEX departments_one_triage ON departments (is_triage) WHERE is_triage;

-- Callers authenticate with an API key; only its SHA-256 is stored.
CREATE TABLE api_keys (
    id          bigserial PRIMARY KEY,
    key_hash    text NOT NULL UNIQUE,
    role        text NOT NULL CHECK (role IN ('source', 'department', 'ops')),
    -- the source name for 'source', the department code for 'department', empty for 'ops'
    scope       text NOT NULL DEFAULT '',
    label       text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);

CREATE TABLE events (
    event_id        uuid PRIMARY KEY,
    source          text NOT NULL,
    external_id     text NOT NULL,
    schema_version  smallint NOT NULL,
    occurred_at     timestamptz NOT NULL,
    received_at     timestamptz NOT NULL,
    lon             double precision,
    lat             double precision,
    address         text,
    text            text NOT NULL,
    priority        text NOT NULL,
    category        text,
    record          jsonb NOT NULL,
    stored_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (source, external_id)
);

CREATE TABLE tickets (
    ticket_id        uuid PRIMARY KEY,
    event_id         uuid NOT NULL UNIQUE REFERENCES events (event_id),
    department_code  text NOT NULL REFERENCES departments (code),
    status           text NOT NULL CHECK (status IN
                       ('dispatched', 'accepted', 'in_progress', 'returned',
                        'resolved', 'closed', 'rejected')),
    priority         text NOT NULL,
    category         text,
    title            text NOT NULL,
    routing_reason   text NOT NULL,
    version          integer NOT NULL DEFAULT 1,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX tickets_department_status ON tickets (department_code, status);

-- Append-only: every change to a ticket, who made it and why.
CREATE TABLE ticket_history (
    id               bigserial PRIMARY KEY,
    ticket_id        uuid NOT NULL REFERENCES tickets (ticket_id),
    at               timestamptz NOT NULL DEFAULT now(),
    action           text NOT NULL,
    actor            text NOT NULL,
    from_status      text,
    to_status        text NOT NULL,
    department_code  text NOT NULL,
    note             text NOT NULL DEFAULT ''
);
CREATE INDEX ticket_history_ticket ON ticket_history (ticket_id, id);
