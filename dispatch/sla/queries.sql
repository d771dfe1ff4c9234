-- name: lock_due_tickets
-- Only due tickets, found through the index of sla_timers (mirrored from tickets.next_timer_at).
SELECT t.ticket_id, t.status, t.department_code, t.sla_marks, t.sla_state,
       t.escalation_level, t.accept_warn_at, t.accept_due_at, t.resolve_warn_at,
       t.resolve_due_at, t.city_escalation_at
FROM sla_timers s
JOIN tickets t ON t.ticket_id = s.ticket_id
WHERE s.due_at <= $1
ORDER BY s.due_at
LIMIT $2
FOR UPDATE OF t SKIP LOCKED

-- name: write_sla_columns
UPDATE tickets t SET
    sla_marks = string_to_array(u.marks, ','), sla_state = u.sla_state,
    escalation_level = u.escalation_level, next_timer_at = u.next_timer_at, updated_at = now()
FROM unnest($1::uuid[], $2::text[], $3::text[], $4::smallint[], $5::timestamptz[])
     AS u(ticket_id, marks, sla_state, escalation_level, next_timer_at)
WHERE t.ticket_id = u.ticket_id

-- name: add_sla_history
INSERT INTO ticket_history (ticket_id, action, actor, from_status, to_status, department_code,
                            note, details)
SELECT h.ticket_id, h.action, 'system:sla', h.status, h.status, h.department_code, h.note,
       h.details
FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::jsonb[])
     AS h(ticket_id, action, status, department_code, note, details)

-- name: sla_board_counts
SELECT count(*) FILTER (WHERE resolve_due_at > $1
                          AND resolve_due_at <= $1 + make_interval(secs => $2)) AS due_soon,
       count(*) FILTER (WHERE resolve_due_at <= $1) AS breached
FROM tickets
WHERE status IN ('dispatched', 'accepted', 'in_progress', 'returned')
  AND resolve_due_at <= $1 + make_interval(secs => $2)
