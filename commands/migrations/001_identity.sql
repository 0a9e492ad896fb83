-- Write-side lookup tables of the identity commands. They are written in the
-- same transaction as the events that mention them, hold what events must
-- never carry (password hashes) and enforce installation-wide uniqueness.

CREATE TABLE tenant_registry (
    tenant_id   text PRIMARY KEY,
    name        text NOT NULL,
    name_key    text NOT NULL UNIQUE,
    active      boolean NOT NULL DEFAULT true,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE identities (
    user_id       text PRIMARY KEY,
    tenant_id     text NOT NULL REFERENCES tenant_registry (tenant_id),
    username      text NOT NULL,
    username_key  text NOT NULL UNIQUE,
    email_key     text UNIQUE,
    password_hash text NOT NULL,
    role          text NOT NULL,
    status        text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'disabled', 'deleted')),
    auth_epoch    bigint NOT NULL DEFAULT 0,
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX identities_tenant ON identities (tenant_id, user_id);

GRANT SELECT, INSERT, UPDATE ON tenant_registry, identities TO vc_app;
