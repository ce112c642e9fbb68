-- Authentication state shared by replicas when the metadata is in PostgreSQL: the users
-- (``registry user``) and the token signing key, which otherwise live under each root.

CREATE TABLE registry_users (
    name           text COLLATE "C" PRIMARY KEY,
    password_hash  text NOT NULL,
    groups         text[] NOT NULL DEFAULT '{}',
    updated_at     timestamptz NOT NULL DEFAULT clock_timestamp()
);

CREATE TABLE signing_keys (
    name        text PRIMARY KEY,
    pem         text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp()
);
