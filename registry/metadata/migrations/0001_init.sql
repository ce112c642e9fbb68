-- The registry metadata, version 1 (the same model as the SQLite store).
-- Every name, tag and digest column sorts by byte order ("C" collation), whatever the
-- database's locale. Times are seconds since the epoch, as the protocol passes them.

CREATE TABLE repositories (
    name        text COLLATE "C" PRIMARY KEY,
    created_at  double precision NOT NULL
);

CREATE TABLE blob_links (
    repo       text COLLATE "C" NOT NULL REFERENCES repositories (name),
    digest     text COLLATE "C" NOT NULL,
    size       bigint NOT NULL CHECK (size >= 0),
    linked_at  double precision NOT NULL,
    PRIMARY KEY (repo, digest)
);
CREATE INDEX blob_links_by_digest ON blob_links (digest);

CREATE TABLE manifests (
    repo           text COLLATE "C" NOT NULL REFERENCES repositories (name),
    digest         text COLLATE "C" NOT NULL,
    media_type     text NOT NULL,
    size           bigint NOT NULL CHECK (size >= 0),
    subject        text COLLATE "C",
    artifact_type  text,
    annotations    jsonb,
    refs           text[] NOT NULL,
    created_at     double precision NOT NULL,
    PRIMARY KEY (repo, digest)
);
CREATE INDEX manifests_by_subject ON manifests (repo, subject, digest)
    WHERE subject IS NOT NULL;

CREATE TABLE tags (
    repo        text COLLATE "C" NOT NULL,
    tag         text COLLATE "C" NOT NULL,
    digest      text COLLATE "C" NOT NULL,
    updated_at  double precision NOT NULL,
    PRIMARY KEY (repo, tag),
    FOREIGN KEY (repo, digest) REFERENCES manifests (repo, digest) ON DELETE CASCADE
);
CREATE INDEX tags_by_digest ON tags (repo, digest);

CREATE TABLE uploads (
    uuid        text COLLATE "C" PRIMARY KEY,
    repo        text COLLATE "C" NOT NULL REFERENCES repositories (name),
    started_at  double precision NOT NULL,
    labels      jsonb NOT NULL
);
CREATE INDEX uploads_by_start ON uploads (started_at, uuid);
