CREATE TABLE tenant_list (
    tenant_id   text PRIMARY KEY,
    name        text NOT NULL,
    name_key    text COLLATE "C" NOT NULL,
    description text NOT NULL DEFAULT '',
    active      boolean NOT NULL,
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL,
    version     bigint NOT NULL
);
CREATE INDEX tenant_list_name ON tenant_list (name_key, tenant_id);

ALTER TABLE tenant_list ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenant_list FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_list_isolation ON tenant_list
    USING (tenant_id = current_setting('app.tenant_id', true) OR current_setting('app.platform', true) = 'on');
GRANT SELECT, INSERT, UPDATE ON tenant_list TO vc_app;
