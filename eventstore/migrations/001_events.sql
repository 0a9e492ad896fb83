-- The events table: the append-only log of every stream and the outbox the relay
-- publishes from. The application role may read and append, never rewrite.

-- vc_app is cluster-wide and other schemas' migrations may create it at the same
-- moment: a racing CREATE ROLE fails with duplicate_object or, when both passed
-- the existence check, unique_violation on pg_authid. Either means it exists.
-- An owner without CREATEROLE (a managed database) works when an administrator
-- created vc_app beforehand and granted it to the owner.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'vc_app') THEN
        CREATE ROLE vc_app NOLOGIN;
    END IF;
EXCEPTION
    WHEN duplicate_object OR unique_violation THEN NULL;
END
$$;

CREATE TABLE events (
    position    bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tx_id       xid8        NOT NULL DEFAULT pg_current_xact_id(),
    event_id    uuid        NOT NULL,
    tenant_id   text        NOT NULL,
    stream_type text        NOT NULL,
    stream_id   text        NOT NULL,
    version     bigint      NOT NULL CHECK (version >= 1),
    name        text        NOT NULL,
    schema      integer     NOT NULL CHECK (schema >= 1),
    payload     jsonb       NOT NULL,
    metadata    jsonb       NOT NULL DEFAULT '{}',
    recorded_at timestamptz NOT NULL,
    prev_hash   bytea       NOT NULL CHECK (length(prev_hash) = 32),
    hash        bytea       NOT NULL CHECK (length(hash) = 32),
    CONSTRAINT events_event_id_key UNIQUE (event_id),
    -- Optimistic concurrency: two appends at the same version cannot both commit.
    -- tenant_id leads, so this index also serves every per-tenant stream scan.
    CONSTRAINT events_stream_version_key UNIQUE (tenant_id, stream_type, stream_id, version)
);

-- Gap-free global reads: ReadAll walks (tx_id, position) below the snapshot xmin.
CREATE INDEX events_tx_position_idx ON events (tx_id, position);

-- One tenant's events in the same global order (exports, per-tenant replays).
CREATE INDEX events_tenant_idx ON events (tenant_id, tx_id, position);

-- Defence in depth: even the owner cannot rewrite history by accident. (A
-- superuser can still ALTER TABLE ... DISABLE TRIGGER; the hash chain is what
-- makes that visible.)
CREATE FUNCTION events_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'events is append-only: % is not allowed', TG_OP
        USING ERRCODE = 'restrict_violation';
END
$$;

CREATE TRIGGER events_append_only
    BEFORE UPDATE OR DELETE OR TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION events_append_only();

DO $$
BEGIN
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO vc_app', current_schema());
END
$$;

-- Only SELECT and INSERT: no UPDATE, DELETE or TRUNCATE. The identity sequence
-- needs no grant: identity values are drawn without a privilege check.
GRANT SELECT, INSERT ON events TO vc_app;
