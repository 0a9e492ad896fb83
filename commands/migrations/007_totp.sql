-- Write-side tables of the second factor (TOTP and recovery codes) and of
-- sign-in throttling. They hold what events must never carry: the TOTP secret
-- (sealed with AES-256-GCM under the master key, the tenant and the purpose
-- "totp" as associated data) and the recovery codes' salted hashes.
-- user.mfa_enabled, user.mfa_disabled and user.mfa_recovery_codes_regenerated
-- are appended in the same transaction as the changes they record.

-- One row per user who ever started a setup. pending is true until the first
-- code proves the authenticator holds the secret (user.mfa_enabled); turning
-- the factor off wipes the secret and the codes and sets pending again.
--
-- last_step is the latest accepted RFC 6238 time step: a code is accepted only
-- for a later step, advanced atomically under the row lock, so that each code
-- works once. failed_attempts, lockouts, last_failure_at and locked_until are
-- the per-user throttle of second-factor attempts (users.MFAThrottle), kept
-- here so that every replica counts the same attempts.
CREATE TABLE mfa_totp (
    user_id         text        PRIMARY KEY REFERENCES identities (user_id),
    tenant_id       text        NOT NULL REFERENCES tenant_registry (tenant_id),
    sealed_secret   bytea,
    pending         boolean     NOT NULL DEFAULT true,
    setup_at        timestamptz,
    enabled_at      timestamptz,
    last_step       bigint      NOT NULL DEFAULT 0,
    failed_attempts integer     NOT NULL DEFAULT 0,
    lockouts        integer     NOT NULL DEFAULT 0,
    last_failure_at timestamptz,
    locked_until    timestamptz,
    recovery_hashes text[]      NOT NULL DEFAULT '{}',
    updated_at      timestamptz NOT NULL,
    CHECK (pending OR sealed_secret IS NOT NULL),
    CHECK (sealed_secret IS NULL OR setup_at IS NOT NULL)
);

-- The MFA tokens (typ "mfa", the proof of a sign-in's password step) that
-- were exchanged for a session: each works once. Rows are kept: one per
-- two-step sign-in.
CREATE TABLE mfa_token_uses (
    jti        text        PRIMARY KEY,
    user_id    text        NOT NULL REFERENCES identities (user_id),
    used_at    timestamptz NOT NULL,
    expires_at timestamptz NOT NULL
);

-- Failed sign-ins per source address (scope 'ip', the client address or its
-- IPv6 /64) in a fixed window, and per user name that names no account (scope
-- 'username', the SHA-256 of the user name key, never the name), which
-- follow the same delays as an account's failures so that throttling does
-- not tell which names exist. Rows are counters, not records: the server
-- deletes them once they can no longer throttle anything.
CREATE TABLE login_throttle (
    scope           text        NOT NULL CHECK (scope IN ('ip', 'username')),
    key             text        NOT NULL,
    failures        integer     NOT NULL,
    window_start    timestamptz NOT NULL,
    last_failure_at timestamptz NOT NULL,
    PRIMARY KEY (scope, key)
);
CREATE INDEX login_throttle_stale ON login_throttle (last_failure_at);

GRANT SELECT, INSERT, UPDATE ON mfa_totp, mfa_token_uses TO vc_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON login_throttle TO vc_app;
