-- Who last set a device profile's alarm rules: 'pack' (hub seed) or the operations centre key
-- that edited them. Re-seeding a pack replaces only rules the pack set, never an admin's edit.
ALTER TABLE device_profiles ADD COLUMN rules_set_by text NOT NULL DEFAULT 'pack';
