-- IoT device registry: vendors (who push telemetry, with API keys of role 'vendor'), device
-- profiles (what a kind of device measures and its alarm rules) and devices, each with its own
-- access token stored as a SHA-256 hash (the ThingsBoard device API authenticates by token).

ALTER TABLE api_keys DROP CONSTRAINT api_keys_role_check;
ALTER TABLE api_keys ADD CONSTRAINT api_keys_role_check
    CHECK (role IN ('source', 'department', 'ops', 'vendor'));

CREATE TABLE vendors (
    code        text PRIMARY KEY CHECK (code ~ '^[a-z0-9][a-z0-9-]{1,63}$'),
    name        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE device_profiles (
    code                  text PRIMARY KEY CHECK (code ~ '^[a-z0-9][a-z0-9-]{1,63}$'),
    name                  text NOT NULL,
    department_code       text REFERENCES departments (code),
    -- default reporting interval and inactivity timeout of its devices, seconds
    reporting_interval_s  integer NOT NULL CHECK (reporting_interval_s > 0),
    inactivity_timeout_s  integer NOT NULL CHECK (inactivity_timeout_s > 0),
    rules                 jsonb NOT NULL DEFAULT '[]'
);

CREATE TABLE devices (
    device_id             uuid PRIMARY KEY,
    vendor_code           text NOT NULL REFERENCES vendors (code),
    -- the vendor's own serial number; unique per vendor
    serial                text NOT NULL CHECK (length(serial) BETWEEN 1 AND 128),
    profile_code          text NOT NULL REFERENCES device_profiles (code),
    department_code       text NOT NULL REFERENCES departments (code),
    name                  text NOT NULL DEFAULT '',
    lon                   double precision NOT NULL,
    lat                   double precision NOT NULL,
    h3_cell               bigint NOT NULL,
    district_code         text,
    reporting_interval_s  integer NOT NULL CHECK (reporting_interval_s > 0),
    inactivity_timeout_s  integer NOT NULL CHECK (inactivity_timeout_s > 0),
    token_hash            text NOT NULL UNIQUE,
    -- what the device reports about itself (ThingsBoard client attributes), merged per post
    client_attributes     jsonb NOT NULL DEFAULT '{}',
    created_at            timestamptz NOT NULL DEFAULT now(),
    disabled_at           timestamptz,
    UNIQUE (vendor_code, serial)
);
CREATE INDEX devices_profile ON devices (profile_code);
CREATE INDEX devices_district ON devices (district_code);
