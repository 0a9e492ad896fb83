-- Signed audit checkpoints: per tenant, a running SHA-256 digest over the
-- hashes of the tenant's events in the global (tx_id, position) order, signed
-- with Ed25519 at intervals (see checkpoints.go). Like events, rows are only
-- ever added: the application role may read and insert, never rewrite.
CREATE TABLE audit_checkpoints (
    tenant_id      text        NOT NULL,
    seq            bigint      NOT NULL CHECK (seq >= 1),
    -- The last event the digest covers, in the global order.
    up_to_tx_id    xid8        NOT NULL,
    up_to_position bigint      NOT NULL,
    -- How many of the tenant's events the digest covers, since the first.
    events         bigint      NOT NULL CHECK (events >= 1),
    digest         bytea       NOT NULL CHECK (length(digest) = 32),
    signed_at      timestamptz NOT NULL,
    key_id         text        NOT NULL,
    signature      bytea       NOT NULL CHECK (length(signature) = 64),
    PRIMARY KEY (tenant_id, seq)
);

CREATE FUNCTION audit_checkpoints_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_checkpoints is append-only: % is not allowed', TG_OP
        USING ERRCODE = 'restrict_violation';
END
$$;

CREATE TRIGGER audit_checkpoints_append_only
    BEFORE UPDATE OR DELETE OR TRUNCATE ON audit_checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION audit_checkpoints_append_only();

GRANT SELECT, INSERT ON audit_checkpoints TO vc_app;
