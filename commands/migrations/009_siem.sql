-- Write-side table of the SIEM destinations: each destination's current
-- settings, kept in the same transaction as the siem_destination.* events so
-- that the forwarders (which serve every tenant) and the list route read one
-- row per destination, and its secret (a Splunk HEC token, an Elastic API key),
-- which events never carry: sealed with AES-256-GCM under the master key, the
-- tenant and the purpose "siem" as associated data. The secret is write-only:
-- no route returns it.
--
-- Rows are never deleted: a removed destination keeps its row with deleted_at
-- set and its secret wiped.
CREATE TABLE siem_destinations (
    tenant_id      text        NOT NULL REFERENCES tenant_registry (tenant_id),
    destination_id text        NOT NULL,
    name           text        NOT NULL,
    kind           text        NOT NULL,
    enabled        boolean     NOT NULL,
    settings       jsonb       NOT NULL,
    sealed_secret  bytea,
    version        bigint      NOT NULL,
    created_by     text        NOT NULL,
    created_at     timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL,
    deleted_at     timestamptz,
    PRIMARY KEY (tenant_id, destination_id),
    CHECK (deleted_at IS NULL OR sealed_secret IS NULL)
);

-- The forwarders' scan of live destinations.
CREATE INDEX siem_destinations_live ON siem_destinations (tenant_id, destination_id) WHERE deleted_at IS NULL;

GRANT SELECT, INSERT, UPDATE ON siem_destinations TO vc_app;
