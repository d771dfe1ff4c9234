-- Dispatch and SLA: departments' hierarchy and people, versioned routing rules, SLA policies,
-- the ticket lifecycle's columns, SLA timers and the outbox to `tickets.changes`.

ALTER TABLE departments
    ADD COLUMN level          text NOT NULL DEFAULT 'city' CHECK (level IN ('city', 'district')),
    ADD COLUMN district_code  text,
    ADD COLUMN parent_code    text REFERENCES departments (code),
    ADD COLUMN phone          text NOT NULL DEFAULT '',
    ADD COLUMN email          text NOT NULL DEFAULT '';

-- Role accounts of each department: who handles, who is escalated to.
CREATE TABLE department_people (
    department_code  text NOT NULL REFERENCES departments (code),
    person           text NOT NULL,
    role             text NOT NULL CHECK (role IN ('handler', 'supervisor', 'leader')),
    phone            text NOT NULL DEFAULT '',
    PRIMARY KEY (department_code, person, role)
);

-- Routing rules are replaced as a whole list: each edit is a new version, old ones stay readable.
CREATE TABLE routing_rule_sets (
    version     integer PRIMARY KEY,
    created_at  timestamptz NOT NULL DEFAULT now(),
    created_by  text NOT NULL,
    note        text NOT NULL DEFAULT ''
);

CREATE TABLE routing_rules (
    version          integer NOT NULL REFERENCES routing_rule_sets (version),
    position         integer NOT NULL,
    name             text NOT NULL,
    categories       text[] NOT NULL DEFAULT '{}',
    districts        text[] NOT NULL DEFAULT '{}',
    priorities       text[] NOT NULL DEFAULT '{}',
    hours            text NOT NULL DEFAULT '',
    department_code  text NOT NULL REFERENCES departments (code),
    PRIMARY KEY (version, position)
);

CREATE TABLE sla_policies (
    category             text NOT NULL,
    priority             text NOT NULL,
    calendar             text NOT NULL CHECK (calendar IN ('working', '24x7')),
    accept_within        text NOT NULL,
    resolve_within       text NOT NULL,
    warn_at              real NOT NULL,
    escalate_city_after  text NOT NULL,
    PRIMARY KEY (category, priority)
);

ALTER TABLE tickets DROP CONSTRAINT tickets_status_check;
ALTER TABLE tickets
    ADD CONSTRAINT tickets_status_check CHECK (status IN
        ('dispatched', 'accepted', 'in_progress', 'returned', 'resolved', 'closed', 'merged')),
    ADD COLUMN routing_version     integer,
    ADD COLUMN routing_rule        integer,
    -- departments that rejected the ticket: re-routing passes them by
    ADD COLUMN rejected_by         text[] NOT NULL DEFAULT '{}',
    ADD COLUMN merged_into         uuid REFERENCES tickets (ticket_id),
    ADD COLUMN sla_policy          text,
    ADD COLUMN sla_calendar        text,
    ADD COLUMN accept_warn_at      timestamptz,
    ADD COLUMN accept_due_at       timestamptz,
    ADD COLUMN resolve_warn_at     timestamptz,
    ADD COLUMN resolve_due_at      timestamptz,
    ADD COLUMN city_escalation_at  timestamptz,
    ADD COLUMN accepted_at         timestamptz,
    ADD COLUMN resolved_at         timestamptz,
    ADD COLUMN closed_at           timestamptz,
    ADD COLUMN paused_at           timestamptz,
    ADD COLUMN paused_from         text,
    -- SLA marks already fired (accept_warning, accept_breach, resolve_warning, resolve_breach,
    -- city_escalation): each fires once per clock
    ADD COLUMN sla_marks           text[] NOT NULL DEFAULT '{}',
    ADD COLUMN sla_state           text NOT NULL DEFAULT 'on_time'
                                   CHECK (sla_state IN ('on_time', 'warning', 'breached')),
    ADD COLUMN escalation_level    smallint NOT NULL DEFAULT 0,
    ADD COLUMN reopen_count        integer NOT NULL DEFAULT 0,
    -- when the SLA timer must next look at this ticket; NULL when no clock runs
    ADD COLUMN next_timer_at       timestamptz;

-- Timers read only what is due, through this index, never a scan of all tickets.
CREATE INDEX tickets_next_timer ON tickets (next_timer_at) WHERE next_timer_at IS NOT NULL;
-- A department's queue, ordered by due time.
CREATE INDEX tickets_department_due ON tickets (department_code, resolve_due_at);
CREATE INDEX tickets_open_due ON tickets (resolve_due_at)
    WHERE status IN ('dispatched', 'accepted', 'in_progress', 'returned');

ALTER TABLE ticket_history ADD COLUMN details jsonb NOT NULL DEFAULT '{}';

-- Written in the same transaction as the change it announces; a relay publishes and deletes
-- rows in id order, so PostgreSQL and Kafka never disagree.
CREATE TABLE outbox (
    id          bigserial PRIMARY KEY,
    topic       text NOT NULL,
    key         bytea NOT NULL,
    value       bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE OR REPLACE VIEW open311_requests AS
SELECT e.event_id, e.source, e.occurred_at, e.updated_at AS event_updated_at, e.text,
       e.address, e.lon, e.lat, e.category, c.name AS service_name,
       e.record -> 'raw' ->> 'media_url' AS media_url,
       e.record -> 'raw' ->> 'address_id' AS address_id,
       t.status AS ticket_status, t.updated_at AS ticket_updated_at, d.name AS agency,
       CASE WHEN t.status IN ('resolved', 'closed', 'merged') THEN 'closed' ELSE 'open' END
           AS status,
       (SELECT h.note FROM ticket_history h
        -- what the public may read: not routing, internal comments or SLA bookkeeping
        WHERE h.ticket_id = t.ticket_id
          AND h.action NOT IN ('dispatch', 'comment', 'sla_warning', 'sla_breach', 'escalate')
        ORDER BY h.id DESC LIMIT 1) AS status_notes,
       t.resolve_due_at AS expected_at
FROM events e
LEFT JOIN categories c ON c.code = e.category
LEFT JOIN incident_members m ON m.event_id = e.event_id
LEFT JOIN tickets t ON t.incident_id = m.incident_id
LEFT JOIN departments d ON d.code = t.department_code;

-- Every history row is announced on `tickets.changes` with the ticket as it stands after the
-- change: a trigger, so no code path can change a ticket without its outbox record. The record's
-- shape is schemas/ticket.py's TicketChangeV1.
CREATE FUNCTION announce_ticket_changes() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO outbox (topic, key, value)
    SELECT 'tickets.changes', convert_to(h.ticket_id::text, 'UTF8'),
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
           )::text, 'UTF8')
    FROM added h
    JOIN tickets t ON t.ticket_id = h.ticket_id
    LEFT JOIN incidents i ON i.incident_id = t.incident_id
    ORDER BY h.id;
    RETURN NULL;
END $$;

CREATE TRIGGER ticket_history_to_outbox AFTER INSERT ON ticket_history
    REFERENCING NEW TABLE AS added FOR EACH STATEMENT EXECUTE FUNCTION announce_ticket_changes();
