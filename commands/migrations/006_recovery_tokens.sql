-- Single-use tokens mailed for password resets and e-mail verification. Only
-- their SHA-256 is stored; the token itself exists only in the mail.
CREATE TABLE recovery_tokens (
    token_hash    bytea PRIMARY KEY,
    purpose       text NOT NULL CHECK (purpose IN ('password_reset', 'email_verification')),
    user_id       text NOT NULL REFERENCES identities (user_id),
    tenant_id     text NOT NULL,
    email         text NOT NULL,
    created_at    timestamptz NOT NULL,
    expires_at    timestamptz NOT NULL,
    used_at       timestamptz,
    superseded_at timestamptz
);
CREATE INDEX recovery_tokens_user ON recovery_tokens (user_id, purpose, created_at);

ALTER TABLE identities ADD COLUMN email_verified boolean NOT NULL DEFAULT false;

GRANT SELECT, INSERT, UPDATE ON recovery_tokens TO vc_app;
