-- artifact_list: one row per artifact (deleted ones kept, flagged), and
-- artifact_list_hosts: every host an artifact was added on or sighted on.
-- value_sha256 is the SHA-256 of the normalised value: values may be longer
-- than a B-tree entry may be, so lookups by value go through the digest.

CREATE TABLE artifact_list (
    tenant_id    text        NOT NULL,
    artifact_id  text        NOT NULL,
    kind         text        NOT NULL,
    value        text COLLATE "C" NOT NULL,
    value_sha256 bytea       NOT NULL,
    case_id      text        NOT NULL DEFAULT '',
    host_id      text        NOT NULL DEFAULT '',
    description  text        NOT NULL DEFAULT '',
    tags         text[]      NOT NULL DEFAULT '{}',
    tlp          text        NOT NULL,
    is_ioc       boolean     NOT NULL DEFAULT false,
    source       text        NOT NULL DEFAULT '',
    metadata     json,
    sightings    integer     NOT NULL DEFAULT 1,
    first_seen   timestamptz NOT NULL,
    last_seen    timestamptz NOT NULL,
    created_at   timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL,
    deleted      boolean     NOT NULL DEFAULT false,
    version      bigint      NOT NULL,
    PRIMARY KEY (tenant_id, artifact_id)
);
CREATE INDEX artifact_list_value ON artifact_list (tenant_id, value_sha256);
CREATE INDEX artifact_list_kind_value ON artifact_list (tenant_id, kind, value_sha256);
CREATE INDEX artifact_list_case ON artifact_list (tenant_id, case_id, created_at, artifact_id);
CREATE INDEX artifact_list_host ON artifact_list (tenant_id, host_id, created_at, artifact_id);
CREATE INDEX artifact_list_created ON artifact_list (tenant_id, created_at, artifact_id);
CREATE INDEX artifact_list_last_seen ON artifact_list (tenant_id, last_seen, artifact_id);

ALTER TABLE artifact_list ENABLE ROW LEVEL SECURITY;
ALTER TABLE artifact_list FORCE ROW LEVEL SECURITY;
CREATE POLICY artifact_list_isolation ON artifact_list
    USING (tenant_id = current_setting('app.tenant_id', true));
GRANT SELECT, INSERT, UPDATE ON artifact_list TO vc_app;

CREATE TABLE artifact_list_hosts (
    tenant_id   text NOT NULL,
    host_id     text NOT NULL,
    artifact_id text NOT NULL,
    PRIMARY KEY (tenant_id, host_id, artifact_id)
);

ALTER TABLE artifact_list_hosts ENABLE ROW LEVEL SECURITY;
ALTER TABLE artifact_list_hosts FORCE ROW LEVEL SECURITY;
CREATE POLICY artifact_list_hosts_isolation ON artifact_list_hosts
    USING (tenant_id = current_setting('app.tenant_id', true));
GRANT SELECT, INSERT ON artifact_list_hosts TO vc_app;
