-- Enrichment: where each event is and how sure its category is.
ALTER TABLE events
    ADD COLUMN category_confidence real,
    ADD COLUMN category_method text,
    ADD COLUMN needs_triage boolean NOT NULL DEFAULT false,
    ADD COLUMN signals text[] NOT NULL DEFAULT '{}',
    ADD COLUMN h3_cell bigint,
    ADD COLUMN district_code text,
    ADD COLUMN location_flag text;
CREATE INDEX events_h3_cell ON events (h3_cell);
CREATE INDEX events_district_occurred ON events (district_code, occurred_at);
