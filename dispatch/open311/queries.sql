-- name: services
SELECT code, name, grp, description, attributes FROM categories ORDER BY grp, code

-- name: service
SELECT code, name, attributes FROM categories WHERE code = $1

-- name: requests_by_id
SELECT e.event_id, e.occurred_at, e.updated_at AS event_updated_at, e.text, e.address,
       e.lon, e.lat, e.category, c.name AS service_name,
       e.record -> 'raw' ->> 'media_url' AS media_url,
       e.record -> 'raw' ->> 'address_id' AS address_id,
       t.status AS ticket_status, t.updated_at AS ticket_updated_at, d.name AS agency,
       (SELECT h.note FROM ticket_history h
        WHERE h.ticket_id = t.ticket_id AND h.action <> 'dispatch'
        ORDER BY h.id DESC LIMIT 1) AS status_notes
FROM events e
LEFT JOIN categories c ON c.code = e.category
LEFT JOIN tickets t ON t.event_id = e.event_id
LEFT JOIN departments d ON d.code = t.department_code
WHERE e.event_id = ANY($1::uuid[]) AND e.source = ANY($2::text[])

-- name: requests_filtered
SELECT e.event_id, e.occurred_at, e.updated_at AS event_updated_at, e.text, e.address,
       e.lon, e.lat, e.category, c.name AS service_name,
       e.record -> 'raw' ->> 'media_url' AS media_url,
       e.record -> 'raw' ->> 'address_id' AS address_id,
       t.status AS ticket_status, t.updated_at AS ticket_updated_at, d.name AS agency,
       (SELECT h.note FROM ticket_history h
        WHERE h.ticket_id = t.ticket_id AND h.action <> 'dispatch'
        ORDER BY h.id DESC LIMIT 1) AS status_notes
FROM events e
LEFT JOIN categories c ON c.code = e.category
LEFT JOIN tickets t ON t.event_id = e.event_id
LEFT JOIN departments d ON d.code = t.department_code
WHERE e.source = ANY($1::text[])
  AND e.occurred_at >= $2 AND e.occurred_at < $3
  AND ($4::text[] IS NULL OR e.category = ANY($4::text[]))
  AND ($5::text[] IS NULL
       OR (CASE WHEN t.status IN ('resolved', 'closed') THEN 'closed' ELSE 'open' END)
          = ANY($5::text[]))
ORDER BY e.occurred_at DESC
LIMIT $6

-- name: queued_requests
-- Accepted through Open311 but not processed by the worker yet: still an open request.
SELECT r.event_id, r.first_received_at
FROM intake_receipts r
WHERE r.event_id = ANY($1::uuid[]) AND r.source = 'open311'
