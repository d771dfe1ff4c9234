-- name: services
SELECT code, name, grp, description, attributes FROM categories ORDER BY grp, code

-- name: service
SELECT code, name, attributes FROM categories WHERE code = $1

-- name: requests_by_id
SELECT * FROM open311_requests
WHERE event_id = ANY($1::uuid[]) AND source = ANY($2::text[])

-- name: requests_filtered
SELECT * FROM open311_requests
WHERE source = ANY($1::text[])
  AND occurred_at >= $2 AND occurred_at < $3
  AND ($4::text[] IS NULL OR category = ANY($4::text[]))
  AND ($5::text[] IS NULL OR status = ANY($5::text[]))
ORDER BY occurred_at DESC
LIMIT $6

-- name: queued_requests
-- Accepted through Open311 but not processed by the worker yet: still an open request.
SELECT r.event_id, r.first_received_at
FROM intake_receipts r
WHERE r.event_id = ANY($1::uuid[]) AND r.source = 'open311'
