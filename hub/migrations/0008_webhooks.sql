-- Departments' webhooks: each ticket change of a department's ticket is POSTed, signed, to its
-- own system, with retries. Deliveries are queued by the same trigger that fills the outbox, in
-- the same transaction as the change.

CREATE TABLE department_webhooks (
    department_code  text PRIMARY KEY REFERENCES departments (code),
    url              text NOT NULL CHECK (url ~ '^https?://'),
    -- The HMAC key itself: the hub signs with it, so it cannot be stored as a hash. It is shown
    -- once, when set, and never returned by the API again.
    secret           text NOT NULL,
    enabled          boolean NOT NULL DEFAULT true,
    updated_at       timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE webhook_deliveries (
    id               bigserial PRIMARY KEY,
    department_code  text NOT NULL REFERENCES departments (code),
    change_id        bigint NOT NULL,
    url              text NOT NULL,
    body             bytea NOT NULL,
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    delivered_at     timestamptz,
    failed_at        timestamptz,
    last_status      integer,
    last_error       text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (department_code, change_id)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at)
    WHERE delivered_at IS NULL AND failed_at IS NULL;

CREATE OR REPLACE FUNCTION announce_ticket_changes() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    WITH changes AS (
        SELECT h.id, h.ticket_id, h.department_code,
               convert_to(jsonb_build_object(
                   'schema_version', 1, 'change_id', h.id, 'ticket_id', h.ticket_id,
                   'action', h.action, 'actor', h.actor, 'at', h.at,
                   'from_status', h.from_status, 'to_status', h.to_status,
                   'note', h.note, 'details', h.details,
                   'ticket', jsonb_build_object(
                       'incident_id', t.incident_id, 'status', t.status,
                       'department_code', t.department_code, 'priority', t.priority,
                       'category', t.category, 'title', t.title, 'version', t.version,
                       'district_code', i.district_code, 'lon', i.lon, 'lat', i.lat,
                       'sla_state', t.sla_state, 'escalation_level', t.escalation_level,
                       'accept_due_at', t.accept_due_at, 'resolve_due_at', t.resolve_due_at,
                       'created_at', t.created_at, 'updated_at', t.updated_at)
               )::text, 'UTF8') AS value
        FROM added h
        JOIN tickets t ON t.ticket_id = h.ticket_id
        LEFT JOIN incidents i ON i.incident_id = t.incident_id
    ), published AS (
        INSERT INTO outbox (topic, key, value)
        SELECT 'tickets.changes', convert_to(ticket_id::text, 'UTF8'), value
        FROM changes ORDER BY id
    )
    INSERT INTO webhook_deliveries (department_code, change_id, url, body)
    SELECT c.department_code, c.id, w.url, c.value
    FROM changes c
    JOIN department_webhooks w ON w.department_code = c.department_code AND w.enabled
    ORDER BY c.id;
    RETURN NULL;
END $$;
