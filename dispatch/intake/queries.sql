-- name: known_hashes
SELECT r.source, r.external_id, r.payload_hash
FROM unnest($1::text[], $2::text[]) AS k(source, external_id)
JOIN intake_receipts r USING (source, external_id)

-- name: record_receipts
-- One row per (source, external id) per call: the caller folds repeats into `deliveries`.
INSERT INTO intake_receipts (source, external_id, event_id, payload_hash, deliveries)
SELECT * FROM unnest($1::text[], $2::text[], $3::uuid[], $4::text[], $5::int[])
ON CONFLICT (source, external_id) DO UPDATE SET
    payload_hash = excluded.payload_hash,
    deliveries = intake_receipts.deliveries + excluded.deliveries,
    last_received_at = now()

-- name: add_counters
INSERT INTO intake_counters (source, day, accepted, updated, duplicate, rejected)
SELECT c.source, c.day, c.accepted, c.updated, c.duplicate, c.rejected
FROM unnest($1::text[], $2::date[], $3::bigint[], $4::bigint[], $5::bigint[], $6::bigint[])
     AS c(source, day, accepted, updated, duplicate, rejected)
ON CONFLICT (source, day) DO UPDATE SET
    accepted = intake_counters.accepted + excluded.accepted,
    updated = intake_counters.updated + excluded.updated,
    duplicate = intake_counters.duplicate + excluded.duplicate,
    rejected = intake_counters.rejected + excluded.rejected

-- name: stats
SELECT c.source, sum(c.accepted) AS accepted, sum(c.updated) AS updated,
       sum(c.duplicate) AS duplicate, sum(c.rejected) AS rejected,
       (SELECT count(*) FROM dead_letters d
        WHERE d.source = c.source AND d.stored_at >= $1::date) AS dead_lettered
FROM intake_counters c WHERE c.day >= $1::date
GROUP BY c.source ORDER BY c.source

-- name: read_back
SELECT r.source, r.external_id, r.event_id, r.first_received_at, r.last_received_at,
       r.deliveries,
       e.occurred_at, e.text, e.address, e.lon, e.lat, e.priority, e.category, e.revision,
       e.source_category, t.incident_id,
       t.ticket_id, t.status AS ticket_status, t.department_code, d.name AS department_name,
       t.updated_at AS ticket_updated_at
FROM intake_receipts r
LEFT JOIN events e ON e.event_id = r.event_id
LEFT JOIN event_tickets t ON t.event_id = r.event_id
LEFT JOIN departments d ON d.code = t.department_code
WHERE r.source = $1 AND r.external_id = $2
