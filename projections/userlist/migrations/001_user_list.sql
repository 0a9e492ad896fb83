CREATE TABLE user_list (
    tenant_id      text NOT NULL,
    user_id        text NOT NULL,
    username       text NOT NULL,
    username_key   text COLLATE "C" NOT NULL,
    email          text NOT NULL DEFAULT '',
    role           text NOT NULL,
    status         text NOT NULL,
    email_verified boolean NOT NULL DEFAULT false,
    totp_enabled   boolean NOT NULL DEFAULT false,
    created_at     timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL,
    last_login_at  timestamptz,
    version        bigint NOT NULL,
    PRIMARY KEY (tenant_id, user_id)
);
CREATE INDEX user_list_username ON user_list (tenant_id, username_key, user_id);

ALTER TABLE user_list ENABLE ROW LEVEL SECURITY;
ALTER TABLE user_list FORCE ROW LEVEL SECURITY;
CREATE POLICY user_list_isolation ON user_list
    USING (tenant_id = current_setting('app.tenant_id', true) OR current_setting('app.platform', true) = 'on');
GRANT SELECT, INSERT, UPDATE ON user_list TO vc_app;
