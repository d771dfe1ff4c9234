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
-- The ticket's history says when the source changed a report it carries.
INSERT INTO ticket_history (ticket_id, action, actor, from_status, to_status, department_code,
                            note)
SELECT et.ticket_id, 'event_updated', 'source:' || e.source, et.status, et.status,
       et.department_code, 'the source sent revision ' || u.revision
FROM unnest($1::uuid[], $2::int[]) AS u(event_id, revision)
JOIN event_tickets et ON et.event_id = u.event_id
JOIN events e ON e.event_id = u.event_id

-- name: upsert_incidents
INSERT INTO incidents AS old (incident_id, category, priority, reports, sources, lon, lat,
                              district_code, opened_at, last_seen)
SELECT i.incident_id, i.category, i.priority, i.reports, string_to_array(i.sources, ','),
       i.lon, i.lat, i.district_code, i.opened_at, i.last_seen
FROM unnest($1::uuid[], $2::text[], $3::text[], $4::int[], $5::text[], $6::float8[],
            $7::float8[], $8::text[], $9::timestamptz[], $10::timestamptz[])
     AS i(incident_id, category, priority, reports, sources, lon, lat, district_code,
          opened_at, last_seen)
ON CONFLICT (incident_id) DO UPDATE SET
    priority = excluded.priority, reports = GREATEST(old.reports, excluded.reports),
    sources = excluded.sources, lon = excluded.lon, lat = excluded.lat,
    last_seen = GREATEST(old.last_seen, excluded.last_seen), updated_at = now()
WHERE excluded.reports >= old.reports

-- name: memberships
SELECT event_id, incident_id FROM incident_members WHERE event_id = ANY($1::uuid[])

-- name: attach_members
-- Each event joins exactly one incident, once: replays attach nothing.
INSERT INTO incident_members (event_id, incident_id)
SELECT * FROM unnest($1::uuid[], $2::uuid[])
ON CONFLICT (event_id) DO NOTHING
RETURNING event_id

-- name: open_incident_tickets
-- One ticket per incident (unique incident_id); only new tickets get a history row.
WITH opened AS (
    INSERT INTO tickets (ticket_id, event_id, incident_id, department_code, status, priority,
                         category, title, routing_reason)
    SELECT t.ticket_id, t.event_id, t.incident_id, $7, 'dispatched', t.priority, t.category,
           t.title, $8
    FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::text[], $6::text[])
         AS t(ticket_id, event_id, incident_id, priority, category, title)
    ON CONFLICT (incident_id) DO NOTHING
    RETURNING ticket_id, department_code, routing_reason
)
INSERT INTO ticket_history (ticket_id, action, actor, from_status, to_status,
                            department_code, note)
SELECT ticket_id, 'dispatch', 'system:router', NULL, 'dispatched', department_code,
       routing_reason
FROM opened
RETURNING ticket_id

-- name: note_attached_reports
INSERT INTO ticket_history (ticket_id, action, actor, from_status, to_status, department_code,
                            note)
SELECT et.ticket_id, 'report_attached', 'system:correlation', et.status, et.status,
       et.department_code, 'another report joined the incident (' || e.source || ')'
FROM unnest($1::uuid[]) AS u(event_id)
JOIN event_tickets et ON et.event_id = u.event_id
JOIN events e ON e.event_id = u.event_id

-- name: follow_incident_priority
-- More reports, or an alarm, can make an incident more pressing: its ticket follows.
UPDATE tickets t SET priority = i.priority, updated_at = now(), version = t.version + 1
FROM incidents i
WHERE t.incident_id = i.incident_id AND i.incident_id = ANY($1::uuid[])
  AND t.priority <> i.priority

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
LEFT JOIN event_tickets t ON t.event_id = e.event_id
LEFT JOIN departments d ON d.code = t.department_code
WHERE e.event_id = $1
