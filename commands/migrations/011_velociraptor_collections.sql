-- velociraptor_collections is the current state of each collection (what the
-- collection list, Collection() and the worker read), kept with the
-- collection events in the same transaction, as velociraptor_hunts is with
-- the hunt events. client_id, host_id, status and purpose are copies of the
-- summary's fields, kept as columns for the list's filters.
CREATE TABLE velociraptor_collections (
    tenant_id     text        NOT NULL REFERENCES tenant_registry (tenant_id),
    collection_id text        NOT NULL,
    client_id     text        NOT NULL,
    host_id       text        NOT NULL DEFAULT '',
    status        text        NOT NULL CHECK (status IN ('requested', 'scheduled', 'completed', 'failed', 'cancelled')),
    purpose       text        NOT NULL CHECK (purpose IN ('collect', 'quarantine', 'release')),
    summary       jsonb       NOT NULL,
    version       bigint      NOT NULL,
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, collection_id)
);

-- The list, newest first, without a filter and with each filter.
CREATE INDEX velociraptor_collections_recent ON velociraptor_collections (tenant_id, created_at DESC, collection_id DESC);
CREATE INDEX velociraptor_collections_client ON velociraptor_collections (tenant_id, client_id, created_at DESC, collection_id DESC);
CREATE INDEX velociraptor_collections_host ON velociraptor_collections (tenant_id, host_id, created_at DESC, collection_id DESC)
    WHERE host_id <> '';
CREATE INDEX velociraptor_collections_status ON velociraptor_collections (tenant_id, status, created_at DESC, collection_id DESC);
CREATE INDEX velociraptor_collections_purpose ON velociraptor_collections (tenant_id, purpose, created_at DESC, collection_id DESC);

GRANT SELECT, INSERT, UPDATE ON velociraptor_collections TO vc_app;

-- A collection asked to be cancelled is open work in its own state: the
-- worker stops its flow (after looking for it by its marker) and records
-- that it was cancelled.
ALTER TABLE velociraptor_jobs DROP CONSTRAINT velociraptor_jobs_state_check;
ALTER TABLE velociraptor_jobs ADD CONSTRAINT velociraptor_jobs_state_check
    CHECK (state IN ('requested', 'scheduled', 'stopping', 'cancelling', 'done'));
