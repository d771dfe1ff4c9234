-- name: store
INSERT INTO dead_letters (topic, partition, "offset", source, stage, reason, key, value,
                          failed_at)
SELECT * FROM unnest($1::text[], $2::int[], $3::bigint[], $4::text[], $5::text[], $6::text[],
                     $7::bytea[], $8::bytea[], $9::timestamptz[])
ON CONFLICT (topic, partition, "offset") DO NOTHING

-- name: list
SELECT id, topic, partition, "offset", source, stage, reason, failed_at, stored_at,
       replayed_at, replay_count, value
FROM dead_letters
WHERE ($1::text IS NULL OR source = $1)
  AND ($2::text IS NULL OR stage = $2)
  AND ($3 OR replayed_at IS NULL)
ORDER BY id DESC
LIMIT $4

-- name: get
SELECT id, topic, key, value FROM dead_letters WHERE id = $1

-- name: mark_replayed
UPDATE dead_letters SET replayed_at = now(), replay_count = replay_count + 1 WHERE id = $1
RETURNING id, replayed_at, replay_count
