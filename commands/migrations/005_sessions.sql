-- Write-side tables of sessions, refresh tokens and API keys. They hold what
-- events must never carry (token and key hashes) and are written in the same
-- transaction as the events that mention them; refreshing a session's tokens
-- writes only here (no event).
--
-- Every change that ends a session happens in a transaction that appends to
-- the user's stream (logout, revocation, refresh-token reuse, and the password,
-- role and status changes in applyIdentity), so the stream's optimistic
-- concurrency orders them with the sign-ins that open sessions.

-- One row per sign-in. A session is open while revoked_at is null and now is
-- before idle_expires_at (which a refresh moves on, never past
-- absolute_expires_at).
CREATE TABLE sessions (
    session_id          text        PRIMARY KEY,
    tenant_id           text        NOT NULL REFERENCES tenant_registry (tenant_id),
    user_id             text        NOT NULL REFERENCES identities (user_id),
    created_at          timestamptz NOT NULL,
    absolute_expires_at timestamptz NOT NULL,
    idle_expires_at     timestamptz NOT NULL,
    last_used_at        timestamptz NOT NULL,
    ip                  text        NOT NULL DEFAULT '',
    user_agent          text        NOT NULL DEFAULT '',
    revoked_at          timestamptz,
    revoke_reason       text,
    CHECK (idle_expires_at <= absolute_expires_at),
    CHECK ((revoked_at IS NULL) = (revoke_reason IS NULL))
);
-- Listing a user's open sessions and ending all of them.
CREATE INDEX sessions_user_open ON sessions (user_id, session_id) WHERE revoked_at IS NULL;

-- Refresh tokens: only their SHA-256. A token is exchanged once (used_at set
-- atomically) for its successor (replaced_by); presenting it again later is a
-- replay that ends the session. Rows stay until the session is long over, so
-- that a replay is recognised as one.
CREATE TABLE refresh_tokens (
    token_hash  bytea       PRIMARY KEY CHECK (length(token_hash) = 32),
    session_id  text        NOT NULL REFERENCES sessions (session_id),
    issued_at   timestamptz NOT NULL,
    used_at     timestamptz,
    replaced_by bytea       CHECK (replaced_by IS NULL OR length(replaced_by) = 32)
);
CREATE INDEX refresh_tokens_session ON refresh_tokens (session_id);

-- API keys of service accounts: the SHA-256 of the whole key string. The key
-- has 256 random bits, so a fast hash is as safe as a slow one (nobody can
-- enumerate 2^256 candidates) and costs nothing per request.
CREATE TABLE api_keys (
    key_id      text        PRIMARY KEY,
    tenant_id   text        NOT NULL REFERENCES tenant_registry (tenant_id),
    name        text        NOT NULL,
    role        text        NOT NULL CHECK (role IN ('admin', 'analyst', 'viewer')),
    secret_hash bytea       NOT NULL CHECK (length(secret_hash) = 32),
    created_by  text        NOT NULL,
    created_at  timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL,
    revoked_at  timestamptz,
    revoked_by  text
);
CREATE INDEX api_keys_tenant ON api_keys (tenant_id, key_id);

GRANT SELECT, INSERT, UPDATE ON sessions, refresh_tokens, api_keys TO vc_app;
