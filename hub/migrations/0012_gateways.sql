-- MQTT gateways (ThingsBoard's gateway API, `v1/gateway/telemetry`): one connection carrying
-- many devices of its vendor, named by their serials. A gateway authenticates by its own access
-- token (hashed, as devices' are) and has no telemetry of its own.

CREATE TABLE gateways (
    gateway_id   uuid PRIMARY KEY,
    vendor_code  text NOT NULL REFERENCES vendors (code),
    name         text NOT NULL CHECK (length(name) BETWEEN 1 AND 128),
    token_hash   text NOT NULL UNIQUE,
    created_at   timestamptz NOT NULL DEFAULT now(),
    disabled_at  timestamptz,
    UNIQUE (vendor_code, name)
);
