-- Where each relay has published up to: a Checkpoint (tx_id, position) per relay
-- name, written only after the broker acknowledged.
CREATE TABLE relay_checkpoints (
    name       text        PRIMARY KEY,
    tx_id      xid8        NOT NULL DEFAULT '0',
    position   bigint      NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now()
);

GRANT SELECT, INSERT, UPDATE ON relay_checkpoints TO vc_app;
