-- notifications is the inbox of every user: one row per (event, recipient,
-- kind), its id derived from those, so that a redelivered or replayed event
-- writes the same row. is_read and read_at are the only columns changed after
-- the insert, by the user (see the package documentation).
CREATE TABLE notifications (
    tenant_id         text        NOT NULL,
    id                uuid        NOT NULL,
    user_id           text        NOT NULL,
    kind              text        NOT NULL,
    notification_type text        NOT NULL CHECK (notification_type IN ('info', 'warning', 'error', 'success')),
    title             text        NOT NULL,
    message           text        NOT NULL,
    link              text,
    is_read           boolean     NOT NULL DEFAULT false,
    read_at           timestamptz,
    created_at        timestamptz NOT NULL,
    source_event_id   uuid        NOT NULL,
    source_position   bigint      NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
-- A user's inbox, newest first (events recorded together are ordered by
-- position), and its unread part.
CREATE INDEX notifications_inbox ON notifications (tenant_id, user_id, created_at DESC, source_position DESC, id DESC);
CREATE INDEX notifications_unread ON notifications (tenant_id, user_id, created_at DESC, source_position DESC, id DESC)
    WHERE NOT is_read;
-- The rows an event produced, for the live WebSocket feed.
CREATE INDEX notifications_source ON notifications (tenant_id, source_position);

ALTER TABLE notifications ENABLE ROW LEVEL SECURITY;
ALTER TABLE notifications FORCE ROW LEVEL SECURITY;
CREATE POLICY notifications_isolation ON notifications
    USING (tenant_id = current_setting('app.tenant_id', true));
GRANT SELECT, INSERT, UPDATE ON notifications TO vc_app;

-- case_assignees is what the projector must know of a case to address its
-- notifications: its current assignee and title. Only case events write it.
CREATE TABLE case_assignees (
    tenant_id text   NOT NULL,
    case_id   text   NOT NULL,
    assignee  text   NOT NULL DEFAULT '',
    title     text   NOT NULL DEFAULT '',
    version   bigint NOT NULL,
    PRIMARY KEY (tenant_id, case_id)
);

ALTER TABLE case_assignees ENABLE ROW LEVEL SECURITY;
ALTER TABLE case_assignees FORCE ROW LEVEL SECURITY;
CREATE POLICY case_assignees_isolation ON case_assignees
    USING (tenant_id = current_setting('app.tenant_id', true));
GRANT SELECT, INSERT, UPDATE ON case_assignees TO vc_app;

-- case_task_assignees is the same for the tasks of a case: a task update that
-- assigns it names the task by its title even when the title did not change.
CREATE TABLE case_task_assignees (
    tenant_id text   NOT NULL,
    case_id   text   NOT NULL,
    task_id   text   NOT NULL,
    assignee  text   NOT NULL DEFAULT '',
    title     text   NOT NULL DEFAULT '',
    version   bigint NOT NULL,
    PRIMARY KEY (tenant_id, case_id, task_id)
);

ALTER TABLE case_task_assignees ENABLE ROW LEVEL SECURITY;
ALTER TABLE case_task_assignees FORCE ROW LEVEL SECURITY;
CREATE POLICY case_task_assignees_isolation ON case_task_assignees
    USING (tenant_id = current_setting('app.tenant_id', true));
GRANT SELECT, INSERT, UPDATE ON case_task_assignees TO vc_app;
