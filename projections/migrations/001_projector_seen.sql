-- projector_seen records, per projector, every event position applied to its
-- read model, in the same transaction as the read-model change. It makes
-- redelivery a no-op and answers WaitFor. Rebuild replaces one projector's rows.

-- vc_app normally exists (the event store's migration creates it). Check first,
-- so that an owner without CREATEROLE can run this; tolerate a racing creator.
DO $$
BEGIN
	IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'vc_app') THEN
		CREATE ROLE vc_app NOLOGIN;
	END IF;
EXCEPTION
	WHEN duplicate_object OR unique_violation THEN NULL;
END
$$;

DO $$ BEGIN EXECUTE format('GRANT USAGE ON SCHEMA %I TO vc_app', current_schema()); END $$;

CREATE TABLE projector_seen (
	projector  text        NOT NULL,
	position   bigint      NOT NULL,
	event_id   uuid        NOT NULL,
	tenant_id  text        NOT NULL,
	applied_at timestamptz NOT NULL DEFAULT clock_timestamp(),
	PRIMARY KEY (projector, position)
);

-- The application role sees and records only its transaction's tenant. The
-- owner (migrations, Rebuild) is not subject to these policies: no FORCE here.
ALTER TABLE projector_seen ENABLE ROW LEVEL SECURITY;
CREATE POLICY projector_seen_tenant ON projector_seen
	USING (tenant_id = current_setting('app.tenant_id', true));
CREATE POLICY projector_seen_platform ON projector_seen FOR SELECT
	USING (current_setting('app.platform', true) = 'on');

GRANT SELECT, INSERT ON projector_seen TO vc_app;
