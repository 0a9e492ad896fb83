-- Write-side uniqueness table of the artifact commands, written in the same
-- transaction as the events. The same value of one kind is one artifact per
-- scope: "case:<case id>" for an artifact on a case (whatever its host), or
-- "host:<host id>" for an artifact on a host alone. A key is reserved by
-- artifact.added and released (never deleted) by artifact.deleted, after which
-- the value may be added again as a new artifact.
--
-- Values may be long (URLs up to 8192 bytes), longer than a B-tree entry may
-- be, so uniqueness is on the SHA-256 of the normalised value; the value is
-- kept beside it for people reading the table.

CREATE TABLE artifact_keys (
    tenant_id    text        NOT NULL,
    artifact_id  text        NOT NULL,
    scope        text        NOT NULL,
    kind         text        NOT NULL,
    value        text        NOT NULL,
    value_sha256 bytea       NOT NULL CHECK (length(value_sha256) = 32),
    released     boolean     NOT NULL DEFAULT false,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, artifact_id)
);
CREATE UNIQUE INDEX artifact_keys_live ON artifact_keys (tenant_id, scope, kind, value_sha256) WHERE NOT released;

GRANT SELECT, INSERT, UPDATE ON artifact_keys TO vc_app;
