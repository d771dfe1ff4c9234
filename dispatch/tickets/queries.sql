-- name: insert_events
-- Replays and duplicates are harmless: an event is stored once, keyed by its derived id.
INSERT INTO events (event_id, source, external_id, schema_version, occurred_at, received_at,
                    lon, lat, address, text, priority, category, record)
SELECT e.event_id, e.source, e.external_id, e.schema_version, e.occurred_at, e.received_at,
       e.lon, e.lat, e.address, e.text, e.priority, e.category, e.record::jsonb
FROM unnest($1::uuid[], $2::text[], $3::text[], $4::smallint[], $5::timestamptz[],
            $6::timestamptz[], $7::float8[], $8::float8[], $9::text[], $10::text[], $11::text[],
            $12::text[], $13::text[])
     AS e(event_id, source, external_id, schema_version, occurred_at, received_at,
          lon, lat, address, text, priority, category, record)
ON CONFLICT (event_id) DO NOTHING

-- name: open_tickets
-- One ticket per event (unique event_id); only newly opened tickets get a history row.
WITH opened AS (
    INSERT INTO tickets (ticket_id, event_id, department_code, status, priority, category,
                         title, routing_reason)
    SELECT t.ticket_id, t.event_id, $6, 'dispatched', t.priority, t.category, t.title, $7
    FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[])
         AS t(ticket_id, event_id, priority, category, title)
    ON CONFLICT (event_id) DO NOTHING
    RETURNING ticket_id, department_code, routing_reason
)
INSERT INTO ticket_history (ticket_id, action, actor, from_status, to_status,
                            department_code, note)
SELECT ticket_id, 'dispatch', 'system:router', NULL, 'dispatched', department_code,
       routing_reason
FROM opened
RETURNING ticket_id

-- name: triage_department
SELECT code FROM departments WHERE is_triage

-- name: get_ticket
SELECT ticket_id, event_id, department_code, status, priority, category, title,
       routing_reason, version, created_at, updated_at
FROM tickets WHERE ticket_id = $1

-- name: ticket_history
SELECT at, action, actor, from_status, to_status, department_code, note
FROM ticket_history WHERE ticket_id = $1 ORDER BY id

-- name: event_status
SELECT e.event_id, e.source, e.external_id, e.received_at, e.occurred_at,
       t.ticket_id, t.status AS ticket_status, t.department_code, t.updated_at
FROM events e LEFT JOIN tickets t ON t.event_id = e.event_id
WHERE e.event_id = $1
