-- Write-side lookup table of the host commands, written in the same
-- transaction as the host events. It makes the Velociraptor client id unique
-- among a tenant's live hosts, so that the sync, which looks a host up by its
-- client id, can never record the same machine twice. Deleting a host frees
-- its client id (the row stays, marked deleted, with client_id NULL).

CREATE TABLE host_registry (
    tenant_id   text        NOT NULL,
    host_id     text        NOT NULL,
    client_id   text,
    deleted     boolean     NOT NULL DEFAULT false,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, host_id),
    CHECK (client_id IS NULL OR NOT deleted)
);
CREATE UNIQUE INDEX host_registry_client ON host_registry (tenant_id, client_id) WHERE client_id IS NOT NULL;

GRANT SELECT, INSERT, UPDATE ON host_registry TO vc_app;
