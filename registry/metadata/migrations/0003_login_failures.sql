-- Failed-login counts shared by replicas (registry.auth.throttle's model): one row per
-- (user, client address); client '' is the user's count from any address.

CREATE TABLE login_failures (
    "user"  text COLLATE "C" NOT NULL,
    client  text COLLATE "C" NOT NULL,
    count   integer NOT NULL,
    last    double precision NOT NULL,
    PRIMARY KEY ("user", client)
);
CREATE INDEX login_failures_by_last ON login_failures (last);
