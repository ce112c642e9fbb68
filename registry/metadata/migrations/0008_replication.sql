-- Replication rules and their runs (registry.replication).

CREATE TABLE replication_rules (
    name        text COLLATE "C" PRIMARY KEY,
    direction   text NOT NULL,
    url         text NOT NULL,
    repos       text NOT NULL,
    tags        text NOT NULL,
    trigger     text NOT NULL,
    interval_s  integer NOT NULL,
    deletes     integer NOT NULL,
    local_url   text NOT NULL,
    created_at  double precision NOT NULL,
    next_at     double precision NOT NULL,
    lease_until double precision NOT NULL DEFAULT 0
);

CREATE TABLE replication_runs (
    id          bigserial PRIMARY KEY,
    rule        text COLLATE "C" NOT NULL REFERENCES replication_rules (name) ON DELETE CASCADE,
    trigger     text NOT NULL,
    state       text NOT NULL,
    started_at  double precision NOT NULL,
    finished_at double precision NOT NULL DEFAULT 0,
    heartbeat   double precision NOT NULL DEFAULT 0,
    dry_run     integer NOT NULL DEFAULT 0,
    manifests   integer NOT NULL DEFAULT 0,
    blobs       integer NOT NULL DEFAULT 0,
    skipped     integer NOT NULL DEFAULT 0,
    mounted     integer NOT NULL DEFAULT 0,
    bytes       bigint NOT NULL DEFAULT 0,
    deleted     integer NOT NULL DEFAULT 0,
    error       text NOT NULL DEFAULT '',
    resumed     bigint NOT NULL DEFAULT 0,
    runner      text NOT NULL DEFAULT ''
);
CREATE INDEX replication_runs_by_rule ON replication_runs (rule, id);
