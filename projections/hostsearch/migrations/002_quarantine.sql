-- A host's network quarantine, from the host.quarantine_* events on its
-- stream: where it stands ('' for never asked, or a hosts.QuarantineStatus),
-- the Velociraptor collection of the latest request or its outcome, and when
-- the status last changed (NULL for never). A rebuild runs this after
-- 001_host_search.sql in the shadow schema, so the rebuilt table has the same
-- columns as a migrated live one.
ALTER TABLE host_search
    ADD COLUMN quarantine_status     text NOT NULL DEFAULT '',
    ADD COLUMN quarantine_collection text NOT NULL DEFAULT '',
    ADD COLUMN quarantine_updated_at timestamptz;
