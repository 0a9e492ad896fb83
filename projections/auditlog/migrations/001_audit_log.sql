-- audit_log: one row per event of the tenant, whatever its stream or name. Rows
-- are only ever added: the application role may read and insert, never update
-- or delete (the projector is insert-only), and no route changes an entry.
CREATE TABLE audit_log (
    tenant_id      text        NOT NULL,
    event_id       uuid        NOT NULL,
    position       bigint      NOT NULL,
    recorded_at    timestamptz NOT NULL,
    actor          text        NOT NULL,
    actor_type     text        NOT NULL,
    role           text        NOT NULL,
    action         text        NOT NULL,
    resource_type  text        NOT NULL,
    resource_id    text        NOT NULL,
    result         text        NOT NULL,
    source_ip      text        NOT NULL,
    user_agent     text        NOT NULL,
    request_id     text        NOT NULL,
    correlation_id text        NOT NULL,
    details        jsonb       NOT NULL,
    PRIMARY KEY (tenant_id, event_id)
);
-- Newest first, alone and under each filter; ties broken by position.
CREATE INDEX audit_log_time ON audit_log (tenant_id, recorded_at DESC, position DESC);
CREATE INDEX audit_log_actor ON audit_log (tenant_id, actor, recorded_at DESC, position DESC);
CREATE INDEX audit_log_action ON audit_log (tenant_id, action, recorded_at DESC, position DESC);
CREATE INDEX audit_log_resource ON audit_log (tenant_id, resource_type, resource_id, recorded_at DESC, position DESC);
CREATE INDEX audit_log_result ON audit_log (tenant_id, result, recorded_at DESC, position DESC);

ALTER TABLE audit_log ENABLE ROW LEVEL SECURITY;
ALTER TABLE audit_log FORCE ROW LEVEL SECURITY;
CREATE POLICY audit_log_isolation ON audit_log USING (tenant_id = current_setting('app.tenant_id', true));
GRANT SELECT, INSERT ON audit_log TO vc_app;
