-- Silences (handlers::silence::Silence). Never edited: expiring one sets the
-- expired_* columns, once. matcher is protocol::silence::SilenceMatch as JSON.
CREATE TABLE silences (
    id              TEXT    PRIMARY KEY,
    matcher         TEXT    NOT NULL,
    starts_at       BIGINT  NOT NULL,
    ends_at         BIGINT  NOT NULL,
    ends_on_resolve BIGINT  NOT NULL CHECK (ends_on_resolve IN (0, 1)),
    comment         TEXT    NOT NULL,
    created_by      TEXT    NOT NULL,
    created_at      BIGINT  NOT NULL,
    expired_at      BIGINT,
    expired_by      TEXT,
    expired_reason  TEXT
);
CREATE INDEX silences_by_end ON silences (ends_at);

-- Per (handler, incident): the problem status last queued for that handler.
-- A resolve goes to exactly the handlers with a row here (whatever silences
-- say), and removes the rows.
CREATE TABLE notified (
    handler      TEXT    NOT NULL,
    incident_key TEXT    NOT NULL,
    status       BIGINT  NOT NULL,
    event_id     TEXT    NOT NULL,
    at           BIGINT  NOT NULL,
    PRIMARY KEY (handler, incident_key)
);

-- Open problems a silence held back: the last silenced event of the
-- incident (handlers::event::Event as JSON, with the handlers it was routed
-- to). When the silences end while it is still open, the handlers not yet
-- told of its status are told then; a resolve removes the row.
CREATE TABLE held (
    incident_key TEXT    PRIMARY KEY,
    event_id     TEXT    NOT NULL,
    body         TEXT    NOT NULL,
    held_at      BIGINT  NOT NULL
);

-- Incidents open before this migration: what each handler was last queued,
-- as far as the outbox still remembers it, so their resolves still arrive.
INSERT INTO notified (handler, incident_key, status, event_id, at)
SELECT o.handler, o.incident_key, e.status, o.event_id, o.created_at
FROM outbox o JOIN events e ON e.id = o.event_id
WHERE o.seq = (SELECT max(l.seq) FROM outbox l WHERE l.handler = o.handler AND l.incident_key = o.incident_key)
  AND (e.kind IN ('problem', 'reminder', 'flapping_start', 'runner_lost', 'missed')
       OR (e.kind = 'flapping_end' AND e.status <> 0));
