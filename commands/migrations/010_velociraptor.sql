-- Write-side tables of the Velociraptor integration, each written in the same
-- transaction as the events it follows.
--
-- velociraptor_connections holds each tenant's api_client configuration: the
-- whole YAML (with the client's private key) sealed with AES-256-GCM under the
-- master key, the tenant and the purpose "velociraptor" as associated data.
-- Events never carry it and no route returns it. version counts the
-- configurations (the worker redials when it changes). Rows are never
-- deleted: a removed connection keeps its row with removed_at set and its
-- configuration wiped.
CREATE TABLE velociraptor_connections (
    tenant_id     text        PRIMARY KEY REFERENCES tenant_registry (tenant_id),
    org_id        text        NOT NULL,
    sealed_config bytea,
    summary       jsonb       NOT NULL,
    version       bigint      NOT NULL,
    updated_at    timestamptz NOT NULL,
    removed_at    timestamptz,
    CHECK ((removed_at IS NULL) = (sealed_config IS NOT NULL))
);

-- velociraptor_jobs is the open work of the worker (a single leader): one row
-- per collection or hunt, its state mirroring the aggregate's. Finished jobs
-- move to 'done' and stay.
CREATE TABLE velociraptor_jobs (
    tenant_id  text        NOT NULL REFERENCES tenant_registry (tenant_id),
    kind       text        NOT NULL CHECK (kind IN ('collection', 'hunt')),
    id         text        NOT NULL,
    state      text        NOT NULL CHECK (state IN ('requested', 'scheduled', 'stopping', 'done')),
    due_at     timestamptz NOT NULL,
    attempts   integer     NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, kind, id)
);

-- The worker's scan of due jobs, across tenants.
CREATE INDEX velociraptor_jobs_open ON velociraptor_jobs (due_at, tenant_id, kind, id) WHERE state <> 'done';

-- velociraptor_hunts is the current state of each hunt (what the hunt list
-- and the worker read), kept with the hunt events.
CREATE TABLE velociraptor_hunts (
    tenant_id  text        NOT NULL REFERENCES tenant_registry (tenant_id),
    hunt_id    text        NOT NULL,
    summary    jsonb       NOT NULL,
    version    bigint      NOT NULL,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, hunt_id)
);

CREATE INDEX velociraptor_hunts_recent ON velociraptor_hunts (tenant_id, created_at DESC, hunt_id DESC);

-- velociraptor_results holds the rows of collections and hunts, per flow and
-- artifact source, numbered from 0 within each. They are evidence: inserted
-- once (a retried store inserts nothing) and never changed.
CREATE TABLE velociraptor_results (
    tenant_id  text        NOT NULL,
    owner_kind text        NOT NULL CHECK (owner_kind IN ('collection', 'hunt')),
    owner_id   text        NOT NULL,
    flow_id    text        NOT NULL,
    client_id  text        NOT NULL,
    source     text        NOT NULL,
    seq        bigint      NOT NULL,
    row        jsonb       NOT NULL,
    stored_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, owner_kind, owner_id, flow_id, source, seq)
);

GRANT SELECT, INSERT, UPDATE ON velociraptor_connections, velociraptor_jobs, velociraptor_hunts TO vc_app;
GRANT SELECT, INSERT ON velociraptor_results TO vc_app;
