-- name: upsert_events
-- New events are stored; a changed payload (another hash, received later) becomes the next
-- revision; replays and duplicates change nothing. Returns what was written.
WITH incoming AS (
    SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::smallint[], $5::timestamptz[],
                         $6::timestamptz[], $7::float8[], $8::float8[], $9::text[], $10::text[],
                         $11::text[], $12::text[], $13::text[], $14::text[], $15::text[],
                         $16::real[], $17::text[], $18::boolean[], $19::text[], $20::bigint[],
                         $21::text[], $22::text[])
         AS e(event_id, source, external_id, schema_version, occurred_at, received_at,
              lon, lat, address, text, priority, category, source_category, payload_hash, record,
              category_confidence, category_method, needs_triage, signals, h3_cell,
              district_code, location_flag)
), written AS (
    INSERT INTO events AS old (event_id, source, external_id, schema_version, occurred_at,
                               received_at, lon, lat, address, text, priority, category,
                               source_category, payload_hash, record, category_confidence,
                               category_method, needs_triage, signals, h3_cell, district_code,
                               location_flag)
    SELECT event_id, source, external_id, schema_version, occurred_at, received_at, lon, lat,
           address, text, priority, category, source_category, payload_hash, record::jsonb,
           category_confidence, category_method, needs_triage,
           string_to_array(signals, ','), h3_cell, district_code, location_flag
    FROM incoming
    ON CONFLICT (event_id) DO UPDATE SET
        schema_version = excluded.schema_version, occurred_at = excluded.occurred_at,
        received_at = excluded.received_at, lon = excluded.lon, lat = excluded.lat,
        address = excluded.address, text = excluded.text, priority = excluded.priority,
        category = excluded.category, source_category = excluded.source_category,
        payload_hash = excluded.payload_hash, record = excluded.record,
        category_confidence = excluded.category_confidence,
        category_method = excluded.category_method, needs_triage = excluded.needs_triage,
        signals = excluded.signals, h3_cell = excluded.h3_cell,
        district_code = excluded.district_code, location_flag = excluded.location_flag,
        revision = old.revision + 1, updated_at = now()
    WHERE old.payload_hash <> excluded.payload_hash AND excluded.received_at > old.received_at
    RETURNING event_id, revision, payload_hash, record
)
INSERT INTO event_revisions (event_id, revision, payload_hash, record)
SELECT event_id, revision, payload_hash, record FROM written
RETURNING event_id, revision

-- name: note_event_updates
-- The ticket's history says when the source changed the report it carries.
INSERT INTO ticket_history (ticket_id, action, actor, from_status, to_status, department_code,
                            note)
SELECT t.ticket_id, 'event_updated', 'source:' || e.source, t.status, t.status,
       t.department_code, 'the source sent revision ' || u.revision
FROM unnest($1::uuid[], $2::int[]) AS u(event_id, revision)
JOIN tickets t ON t.event_id = u.event_id
JOIN events e ON e.event_id = u.event_id

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
       t.ticket_id, t.status AS ticket_status, t.department_code, d.name AS department_name,
       t.updated_at AS ticket_updated_at
FROM events e
LEFT JOIN tickets t ON t.event_id = e.event_id
LEFT JOIN departments d ON d.code = t.department_code
WHERE e.event_id = $1
