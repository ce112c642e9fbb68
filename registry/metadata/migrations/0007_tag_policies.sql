-- Tag policies of projects (registry.tagpolicy): immutability rules (tags a push may not
-- move and a delete may not remove) and retention rules (which tagged manifests a
-- retention run keeps). Patterns are checked by the registry before they are stored.

CREATE TABLE immutable_rules (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    project       text COLLATE "C" NOT NULL,
    repositories  text NOT NULL,
    tags          text NOT NULL,
    created_at    double precision NOT NULL
);
CREATE INDEX immutable_rules_by_project ON immutable_rules (project, id);

CREATE TABLE retention_rules (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    project       text COLLATE "C" NOT NULL,
    repositories  text NOT NULL,
    tags          text NOT NULL,
    kind          text NOT NULL CHECK (kind IN ('latest', 'days', 'always')),
    count         integer CHECK (count IS NULL OR count > 0),
    created_at    double precision NOT NULL
);
CREATE INDEX retention_rules_by_project ON retention_rules (project, id);
