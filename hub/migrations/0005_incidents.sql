-- Incidents: one problem, many reports. Every event belongs to exactly one incident, and every
-- incident has exactly one ticket.
CREATE TABLE incidents (
    incident_id    uuid PRIMARY KEY,
    category       text,
    priority       text NOT NULL,
    reports        integer NOT NULL,
    sources        text[] NOT NULL,
    lon            double precision,
    lat            double precision,
    district_code  text,
    opened_at      timestamptz NOT NULL,
    last_seen      timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE incident_members (
    event_id     uuid PRIMARY KEY REFERENCES events (event_id),
    incident_id  uuid NOT NULL REFERENCES incidents (incident_id),
    attached_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX incident_members_incident ON incident_members (incident_id);

-- A ticket carries an incident; its event_id stays the incident's first report.
ALTER TABLE tickets ADD COLUMN incident_id uuid UNIQUE REFERENCES incidents (incident_id);

-- Each event with the ticket that carries it (through its incident).
CREATE VIEW event_tickets AS
SELECT m.event_id, m.incident_id, t.ticket_id, t.status, t.department_code, t.priority,
       t.updated_at
FROM incident_members m JOIN tickets t ON t.incident_id = m.incident_id;

-- The Open311 view reads the ticket through the incident too.
CREATE OR REPLACE VIEW open311_requests AS
SELECT e.event_id, e.source, e.occurred_at, e.updated_at AS event_updated_at, e.text,
       e.address, e.lon, e.lat, e.category, c.name AS service_name,
       e.record -> 'raw' ->> 'media_url' AS media_url,
       e.record -> 'raw' ->> 'address_id' AS address_id,
       t.status AS ticket_status, t.updated_at AS ticket_updated_at, d.name AS agency,
       CASE WHEN t.status IN ('resolved', 'closed') THEN 'closed' ELSE 'open' END AS status,
       (SELECT h.note FROM ticket_history h
        WHERE h.ticket_id = t.ticket_id AND h.action <> 'dispatch'
        ORDER BY h.id DESC LIMIT 1) AS status_notes
FROM events e
LEFT JOIN categories c ON c.code = e.category
LEFT JOIN incident_members m ON m.event_id = e.event_id
LEFT JOIN tickets t ON t.incident_id = m.incident_id
LEFT JOIN departments d ON d.code = t.department_code;
