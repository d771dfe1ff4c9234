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
-- One ticket per incident (unique incident_id), routed and with its SLA clocks set; only new
-- tickets get a history row.
WITH opened AS (
    INSERT INTO tickets (ticket_id, event_id, incident_id, status, priority, category, title,
                         department_code, routing_reason, routing_rule, routing_version,
                         sla_policy, sla_calendar, accept_warn_at, accept_due_at,
                         resolve_warn_at, resolve_due_at, city_escalation_at, next_timer_at)
    SELECT t.ticket_id, t.event_id, t.incident_id, 'dispatched', t.priority, t.category,
           t.title, t.department_code, t.routing_reason, t.routing_rule, $11, t.sla_policy,
           t.sla_calendar, t.accept_warn_at, t.accept_due_at, t.resolve_warn_at,
           t.resolve_due_at, t.city_escalation_at, t.next_timer_at
    FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::text[], $6::text[],
                $7::text[], $8::text[], $9::int[], $10::text[], $12::text[],
                $13::timestamptz[], $14::timestamptz[], $15::timestamptz[], $16::timestamptz[],
                $17::timestamptz[], $18::timestamptz[])
         AS t(ticket_id, event_id, incident_id, priority, category, title, department_code,
              routing_reason, routing_rule, sla_policy, sla_calendar, accept_warn_at,
              accept_due_at, resolve_warn_at, resolve_due_at, city_escalation_at,
              next_timer_at)
    ON CONFLICT (incident_id) DO NOTHING
    RETURNING ticket_id, department_code, routing_reason, routing_rule, routing_version
)
INSERT INTO ticket_history (ticket_id, action, actor, from_status, to_status,
                            department_code, note, details)
SELECT ticket_id, 'dispatch', 'system:router', NULL, 'dispatched', department_code,
       routing_reason,
       jsonb_build_object('routing_rule', routing_rule, 'routing_version', routing_version)
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
FROM incidents i, tickets before
WHERE t.incident_id = i.incident_id AND i.incident_id = ANY($1::uuid[])
  AND t.priority <> i.priority AND before.ticket_id = t.ticket_id
RETURNING t.*, before.priority AS was

-- name: tighten_clocks
UPDATE tickets t SET
    sla_policy = u.sla_policy, sla_calendar = u.sla_calendar,
    accept_warn_at = u.accept_warn_at, accept_due_at = u.accept_due_at,
    resolve_warn_at = u.resolve_warn_at, resolve_due_at = u.resolve_due_at,
    city_escalation_at = u.city_escalation_at, next_timer_at = u.next_timer_at
FROM unnest($1::uuid[], $2::text[], $3::text[], $4::timestamptz[], $5::timestamptz[],
            $6::timestamptz[], $7::timestamptz[], $8::timestamptz[], $9::timestamptz[])
     AS u(ticket_id, sla_policy, sla_calendar, accept_warn_at, accept_due_at, resolve_warn_at,
          resolve_due_at, city_escalation_at, next_timer_at)
WHERE t.ticket_id = u.ticket_id

-- name: note_priority_changes
INSERT INTO ticket_history (ticket_id, action, actor, from_status, to_status, department_code,
                            note, details)
SELECT t.ticket_id, 'priority_changed', 'system:correlation', t.status, t.status,
       t.department_code, 'priority ' || u.was || ' → ' || t.priority,
       jsonb_build_object('resolve_due_at', t.resolve_due_at)
FROM unnest($1::uuid[], $2::text[]) AS u(ticket_id, was)
JOIN tickets t ON t.ticket_id = u.ticket_id

-- name: resolved_tickets_of
-- Tickets, resolved or closed, of the incidents these new reports joined; locked.
SELECT t.ticket_id, t.status, t.category, t.priority, t.sla_marks
FROM tickets t
WHERE t.ticket_id IN (SELECT ticket_id FROM event_tickets WHERE event_id = ANY($1::uuid[]))
  AND t.status IN ('resolved', 'closed')
FOR UPDATE

-- name: reopen_for_report
WITH reopened AS (
    UPDATE tickets SET status = 'in_progress', resolved_at = NULL, closed_at = NULL,
           resolve_warn_at = $2, resolve_due_at = $3, city_escalation_at = $4,
           sla_marks = $5, sla_state = 'on_time', escalation_level = 0, next_timer_at = $6,
           reopen_count = reopen_count + 1, version = version + 1, updated_at = now()
    WHERE ticket_id = $1
    RETURNING ticket_id, department_code
)
INSERT INTO ticket_history (ticket_id, action, actor, from_status, to_status, department_code,
                            note)
SELECT ticket_id, 'reopen', 'system:correlation', $7, 'in_progress', department_code,
       'a new report about the same problem arrived after it was resolved'
FROM reopened

-- name: get_ticket

SELECT t.*, i.district_code, i.lon, i.lat, i.reports
FROM tickets t LEFT JOIN incidents i ON i.incident_id = t.incident_id
WHERE t.ticket_id = $1

-- name: ticket_history
SELECT at, action, actor, from_status, to_status, department_code, note, details
FROM ticket_history WHERE ticket_id = $1 ORDER BY id

-- name: list_tickets
-- A queue: NULL filters match everything; the most urgent (resolve due) first.
SELECT t.ticket_id, t.incident_id, t.department_code, t.status, t.priority, t.category,
       t.title, i.district_code, t.version, t.sla_state, t.escalation_level, t.accept_due_at,
       t.resolve_due_at, t.created_at, t.updated_at, count(*) OVER () AS total
FROM tickets t LEFT JOIN incidents i ON i.incident_id = t.incident_id
WHERE ($1::text IS NULL OR t.department_code = $1)
  AND ($2::text[] IS NULL OR t.status = ANY($2))
  AND ($3::text[] IS NULL OR t.priority = ANY($3))
  AND ($4::text[] IS NULL OR t.category = ANY($4))
  AND ($5::text[] IS NULL OR t.sla_state = ANY($5))
  AND ($6::text[] IS NULL OR i.district_code = ANY($6))
ORDER BY t.resolve_due_at NULLS LAST, t.created_at, t.ticket_id
LIMIT $7 OFFSET $8

-- name: event_status
SELECT e.event_id, e.source, e.external_id, e.received_at, e.occurred_at,
       t.ticket_id, t.status AS ticket_status, t.department_code, d.name AS department_name,
       t.updated_at AS ticket_updated_at
FROM events e
LEFT JOIN event_tickets t ON t.event_id = e.event_id
LEFT JOIN departments d ON d.code = t.department_code
WHERE e.event_id = $1

-- name: lock_ticket
SELECT t.*, i.district_code
FROM tickets t LEFT JOIN incidents i ON i.incident_id = t.incident_id
WHERE t.ticket_id = $1
FOR UPDATE OF t

-- name: write_ticket
-- Columns in actions.STATE_COLUMNS order.
UPDATE tickets SET
    status = $2, department_code = $3, routing_reason = $4, routing_version = $5,
    routing_rule = $6, rejected_by = $7, merged_into = $8, sla_policy = $9, sla_calendar = $10,
    accept_warn_at = $11, accept_due_at = $12, resolve_warn_at = $13, resolve_due_at = $14,
    city_escalation_at = $15, accepted_at = $16, resolved_at = $17, closed_at = $18,
    paused_at = $19, paused_from = $20, sla_marks = $21, sla_state = $22,
    escalation_level = $23, reopen_count = $24, next_timer_at = $25,
    version = version + 1, updated_at = now()
WHERE ticket_id = $1

-- name: add_history
INSERT INTO ticket_history (ticket_id, action, actor, from_status, to_status, department_code,
                            note, details)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8::jsonb)
