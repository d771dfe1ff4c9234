-- Tickets opened before correlation existed carry one report and no incident: give each the
-- incident correlation would have opened for it (id = uuid5(INCIDENT_ID_NAMESPACE, event id),
-- see streams/correlate/engine.py), so a re-sent report finds it instead of colliding.
-- Idempotent: safe to run again.
CREATE EXTENSION IF NOT EXISTS "uuid-ossp";

INSERT INTO incidents (incident_id, category, priority, reports, sources, lon, lat,
                       district_code, opened_at, last_seen)
SELECT uuid_generate_v5('8f4a3b1e-2c67-4d0a-9e55-0b7c3a1d6f90', e.event_id::text), e.category,
       t.priority, 1, ARRAY[e.source], e.lon, e.lat, e.district_code, e.occurred_at,
       e.occurred_at
FROM tickets t JOIN events e ON e.event_id = t.event_id
WHERE t.incident_id IS NULL
ON CONFLICT (incident_id) DO NOTHING;

INSERT INTO incident_members (event_id, incident_id)
SELECT t.event_id, uuid_generate_v5('8f4a3b1e-2c67-4d0a-9e55-0b7c3a1d6f90', t.event_id::text)
FROM tickets t
WHERE t.incident_id IS NULL
ON CONFLICT (event_id) DO NOTHING;

UPDATE tickets
SET incident_id = uuid_generate_v5('8f4a3b1e-2c67-4d0a-9e55-0b7c3a1d6f90', event_id::text)
WHERE incident_id IS NULL;
