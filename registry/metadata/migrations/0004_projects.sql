-- Projects and their members (registry.projects): the first path segment of a repository
-- is its project. project_generation counts the writes so that replicas refresh their
-- cached roles with one primary-key read.

CREATE TABLE projects (
    name        text COLLATE "C" PRIMARY KEY,
    public      boolean NOT NULL,
    quota       bigint,
    created_at  double precision NOT NULL
);

CREATE TABLE project_members (
    project  text COLLATE "C" NOT NULL REFERENCES projects (name) ON DELETE CASCADE,
    name     text COLLATE "C" NOT NULL,
    role     text NOT NULL CHECK (role IN ('guest', 'developer', 'maintainer', 'admin')),
    PRIMARY KEY (project, name)
);

CREATE TABLE project_generation (
    id  integer PRIMARY KEY CHECK (id = 0),
    n   bigint NOT NULL
);
INSERT INTO project_generation (id, n) VALUES (0, 0);
