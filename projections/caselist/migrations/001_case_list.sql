CREATE TABLE case_list (
    tenant_id       text NOT NULL,
    case_id         text NOT NULL,
    title           text NOT NULL,
    status          text NOT NULL,
    severity        text NOT NULL,
    severity_level  smallint NOT NULL,
    tlp             text NOT NULL,
    pap             text NOT NULL,
    assignee        text NOT NULL DEFAULT '',
    tags            text[] NOT NULL DEFAULT '{}',
    techniques      text[] NOT NULL DEFAULT '{}',
    hosts           text[] NOT NULL DEFAULT '{}',
    open_tasks      integer NOT NULL DEFAULT 0,
    tasks           integer NOT NULL DEFAULT 0,
    comments        integer NOT NULL DEFAULT 0,
    resolution_type text NOT NULL DEFAULT '',
    created_by      text NOT NULL,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    closed_at       timestamptz,
    version         bigint NOT NULL,
    PRIMARY KEY (tenant_id, case_id)
);
CREATE INDEX case_list_created ON case_list (tenant_id, created_at DESC, case_id DESC);
CREATE INDEX case_list_updated ON case_list (tenant_id, updated_at DESC, case_id DESC);
CREATE INDEX case_list_status ON case_list (tenant_id, status, created_at DESC);
CREATE INDEX case_list_assignee ON case_list (tenant_id, assignee, created_at DESC);
CREATE INDEX case_list_tags ON case_list USING gin (tags);
CREATE INDEX case_list_techniques ON case_list USING gin (techniques);

-- Per-task state, so that open task counts stay right under any event order
-- within the case's stream.
CREATE TABLE case_list_tasks (
    tenant_id text NOT NULL,
    case_id   text NOT NULL,
    task_id   text NOT NULL,
    status    text NOT NULL,
    deleted   boolean NOT NULL DEFAULT false,
    PRIMARY KEY (tenant_id, case_id, task_id)
);

ALTER TABLE case_list ENABLE ROW LEVEL SECURITY;
ALTER TABLE case_list FORCE ROW LEVEL SECURITY;
CREATE POLICY case_list_isolation ON case_list USING (tenant_id = current_setting('app.tenant_id', true));
ALTER TABLE case_list_tasks ENABLE ROW LEVEL SECURITY;
ALTER TABLE case_list_tasks FORCE ROW LEVEL SECURITY;
CREATE POLICY case_list_tasks_isolation ON case_list_tasks USING (tenant_id = current_setting('app.tenant_id', true));
GRANT SELECT, INSERT, UPDATE ON case_list, case_list_tasks TO vc_app;
