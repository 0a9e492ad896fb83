-- The hostsearch.v1 read model: one row per host, with its addresses and
-- labels in child tables so that the filters on them are index lookups.
--
-- Every table is under forced row-level security, and that shapes the indexes.
-- PostgreSQL only uses a query's condition as an index condition on such a
-- table when the condition's operator is leakproof; the operators of pg_trgm
-- (LIKE/ILIKE through gin_trgm_ops) and of the inet containment operators
-- (<<=, >>=) are not, so trigram and GiST inet indexes would never be used by
-- the application role. The indexes here use only B-tree comparisons, which
-- are leakproof:
--   * every sort column has a (tenant_id, column, host_id) index that serves
--     ORDER BY and the keyset condition (column, host_id) > (cursor) and, for
--     hostname_key, a prefix filter as a range;
--   * a hostname substring filter is evaluated on the index entries read in
--     sort order (the sort indexes include hostname_key), so a page costs what
--     it takes to find limit matches, and at worst one walk of the tenant's
--     entries of one index;
--   * an IP filter, exact or CIDR, is a range over (tenant_id, ip), since
--     every stored address is a host address (/32 or /128).
-- Text keys use the "C" collation: byte order, so that a prefix is a range and
-- the sort order does not depend on the server's locale. Tenant and host ids
-- (UUIDs everywhere in the system) are stored as uuid: 16 bytes instead of 37
-- in every index entry, which halves the indexes a page query walks.

CREATE TABLE host_search (
    tenant_id     uuid NOT NULL,
    host_id       uuid NOT NULL,
    hostname      text NOT NULL,
    hostname_key  text COLLATE "C" NOT NULL,          -- lower(hostname)
    fqdn          text NOT NULL DEFAULT '',
    fqdn_key      text COLLATE "C" NOT NULL DEFAULT '', -- lower(fqdn)
    ip_addresses  text[] NOT NULL DEFAULT '{}',        -- canonical, IPv4 first
    os            text NOT NULL DEFAULT '',
    os_key        text COLLATE "C" NOT NULL DEFAULT '', -- lower(os)
    os_version    text NOT NULL DEFAULT '',
    labels        text[] NOT NULL DEFAULT '{}',
    client_id     text NOT NULL DEFAULT '',
    metadata      jsonb,
    -- Never seen is -infinity, so that the sort columns have no NULLs.
    first_seen    timestamptz NOT NULL DEFAULT '-infinity',
    last_seen     timestamptz NOT NULL DEFAULT '-infinity',
    threat_score  integer NOT NULL DEFAULT 0,
    threat_class  text NOT NULL DEFAULT '',            -- '' until scored
    source        text NOT NULL,                       -- who registered or discovered it
    deleted       boolean NOT NULL DEFAULT false,      -- soft-deleted hosts stay as tombstones
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL,
    version       bigint NOT NULL,
    PRIMARY KEY (tenant_id, host_id)
)
-- Index-only scans need the visibility map to be current: vacuum sooner than
-- the default 20 % of changed rows, as sightings update rows all the time.
WITH (autovacuum_vacuum_scale_factor = 0.02, autovacuum_vacuum_insert_scale_factor = 0.02,
      autovacuum_analyze_scale_factor = 0.05);
-- The sort indexes carry hostname_key and deleted, so that a page query can
-- walk one of them and test the hostname filters on its entries alone (an
-- index-only scan), fetching only the rows of the page from the table.
CREATE INDEX host_search_hostname   ON host_search (tenant_id, hostname_key, host_id) INCLUDE (deleted);
CREATE INDEX host_search_fqdn       ON host_search (tenant_id, fqdn_key, host_id) INCLUDE (hostname_key, deleted);
CREATE INDEX host_search_os         ON host_search (tenant_id, os_key, host_id) INCLUDE (hostname_key, deleted);
CREATE INDEX host_search_last_seen  ON host_search (tenant_id, last_seen, host_id) INCLUDE (hostname_key, deleted);
CREATE INDEX host_search_first_seen ON host_search (tenant_id, first_seen, host_id) INCLUDE (hostname_key, deleted);
CREATE INDEX host_search_score      ON host_search (tenant_id, threat_score, host_id) INCLUDE (hostname_key, deleted);
CREATE INDEX host_search_created    ON host_search (tenant_id, created_at, host_id) INCLUDE (hostname_key, deleted);

CREATE TABLE host_search_ip (
    tenant_id  uuid NOT NULL,
    host_id    uuid NOT NULL,
    ip         inet NOT NULL,
    PRIMARY KEY (tenant_id, host_id, ip)
);
CREATE INDEX host_search_ip_ip ON host_search_ip (tenant_id, ip, host_id);

CREATE TABLE host_search_label (
    tenant_id  uuid NOT NULL,
    host_id    uuid NOT NULL,
    label      text COLLATE "C" NOT NULL,
    PRIMARY KEY (tenant_id, host_id, label)
);
CREATE INDEX host_search_label_label ON host_search_label (tenant_id, label, host_id);

ALTER TABLE host_search ENABLE ROW LEVEL SECURITY;
ALTER TABLE host_search FORCE ROW LEVEL SECURITY;
CREATE POLICY host_search_isolation ON host_search
    USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid);
ALTER TABLE host_search_ip ENABLE ROW LEVEL SECURITY;
ALTER TABLE host_search_ip FORCE ROW LEVEL SECURITY;
CREATE POLICY host_search_ip_isolation ON host_search_ip
    USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid);
ALTER TABLE host_search_label ENABLE ROW LEVEL SECURITY;
ALTER TABLE host_search_label FORCE ROW LEVEL SECURITY;
CREATE POLICY host_search_label_isolation ON host_search_label
    USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid);

GRANT SELECT, INSERT, UPDATE ON host_search TO vc_app;
GRANT SELECT, INSERT, DELETE ON host_search_ip, host_search_label TO vc_app;
