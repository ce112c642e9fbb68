-- Robot accounts (robot$project+name) and users' revocable CLI secrets; see
-- registry/robots/store.py for the SQLite twin. robot_state.generation counts changes so
-- that servers drop their caches of verified credentials.

CREATE TABLE robots (
    project      text COLLATE "C" NOT NULL,
    name         text COLLATE "C" NOT NULL,
    actions      text NOT NULL,
    secret_hash  text NOT NULL,
    created_at   double precision NOT NULL,
    expires_at   double precision,
    disabled     boolean NOT NULL DEFAULT false,
    description  text NOT NULL DEFAULT '',
    PRIMARY KEY (project, name)
);

CREATE TABLE user_secrets (
    id           text PRIMARY KEY,
    "user"       text COLLATE "C" NOT NULL,
    label        text NOT NULL,
    secret_hash  text NOT NULL UNIQUE,
    created_at   double precision NOT NULL,
    UNIQUE ("user", label)
);

CREATE TABLE robot_state (
    id          integer PRIMARY KEY CHECK (id = 1),
    generation  bigint NOT NULL
);
INSERT INTO robot_state (id, generation) VALUES (1, 0);
