-- The audit log (registry.audit) and the webhooks with their deliveries (registry.webhooks).

CREATE TABLE audit_events (
    id          bigserial PRIMARY KEY,
    at          double precision NOT NULL,
    action      text NOT NULL,
    subject     text NOT NULL,
    address     text NOT NULL,
    project     text COLLATE "C" NOT NULL,
    repository  text COLLATE "C" NOT NULL,
    reference   text NOT NULL,
    digest      text NOT NULL,
    detail      text NOT NULL
);
CREATE INDEX audit_events_by_at ON audit_events (at);
CREATE INDEX audit_events_by_project ON audit_events (project, at);
CREATE INDEX audit_events_by_subject ON audit_events (subject, at);

CREATE TABLE webhooks (
    id          bigserial PRIMARY KEY,
    project     text COLLATE "C" NOT NULL,
    name        text COLLATE "C" NOT NULL,
    url         text NOT NULL,
    events      text NOT NULL,
    secret      text NOT NULL,
    created_at  double precision NOT NULL,
    UNIQUE (project, name)
);

CREATE TABLE webhook_deliveries (
    id            bigserial PRIMARY KEY,
    webhook_id    bigint NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    event_type    text NOT NULL,
    payload       text NOT NULL,
    state         text NOT NULL,
    attempts      integer NOT NULL DEFAULT 0,
    next_at       double precision NOT NULL,
    lease_until   double precision NOT NULL DEFAULT 0,
    response_code integer,
    last_error    text NOT NULL DEFAULT '',
    created_at    double precision NOT NULL,
    updated_at    double precision NOT NULL
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_at) WHERE state = 'pending';
CREATE INDEX webhook_deliveries_by_hook ON webhook_deliveries (webhook_id, id);
