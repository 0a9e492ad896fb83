-- velociraptor_requests is what the projector must know to tell a user that
-- what they asked Velociraptor for has ended: who asked, why and for what.
-- kind 'collection' and 'hunt' rows are keyed by the collection's or hunt's
-- id and written by collection.requested and hunt.requested; kind
-- 'quarantine' rows are keyed by the collection that quarantines or releases
-- a host and written by host.quarantine_requested and host.release_requested,
-- on the host's stream, so that its outcome (host.quarantined, …, on the same
-- stream) always finds it. Rows are written once.
CREATE TABLE velociraptor_requests (
    tenant_id text NOT NULL,
    kind      text NOT NULL CHECK (kind IN ('collection', 'hunt', 'quarantine')),
    id        text NOT NULL,
    requester text NOT NULL,
    purpose   text NOT NULL DEFAULT '',   -- collect, quarantine or release; '' for a hunt
    subject   text NOT NULL DEFAULT '',   -- what messages call it: a collection's artifacts and client, a hunt's description
    PRIMARY KEY (tenant_id, kind, id)
);

ALTER TABLE velociraptor_requests ENABLE ROW LEVEL SECURITY;
ALTER TABLE velociraptor_requests FORCE ROW LEVEL SECURITY;
CREATE POLICY velociraptor_requests_isolation ON velociraptor_requests
    USING (tenant_id = current_setting('app.tenant_id', true));
GRANT SELECT, INSERT ON velociraptor_requests TO vc_app;

-- host_names is the current name of every host, so that a quarantine
-- notification can name its host; only host events write it.
CREATE TABLE host_names (
    tenant_id text   NOT NULL,
    host_id   text   NOT NULL,
    hostname  text   NOT NULL,
    version   bigint NOT NULL,
    PRIMARY KEY (tenant_id, host_id)
);

ALTER TABLE host_names ENABLE ROW LEVEL SECURITY;
ALTER TABLE host_names FORCE ROW LEVEL SECURITY;
CREATE POLICY host_names_isolation ON host_names
    USING (tenant_id = current_setting('app.tenant_id', true));
GRANT SELECT, INSERT, UPDATE ON host_names TO vc_app;
