-- picket handler state, SQLite. Times are Unix epoch milliseconds (UTC).

-- Per (check, subscription) alerting state: handlers::state::CheckState as JSON.
CREATE TABLE check_state (
    check_name   TEXT    NOT NULL,
    subscription TEXT    NOT NULL,
    state        TEXT    NOT NULL,
    updated_at   INTEGER NOT NULL,
    PRIMARY KEY (check_name, subscription)
);

-- Every event decided, in order; body is handlers::event::Event as JSON.
CREATE TABLE events (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    id           TEXT    NOT NULL UNIQUE,
    kind         TEXT    NOT NULL,
    check_name   TEXT    NOT NULL,
    subscription TEXT    NOT NULL,
    runner       TEXT    NOT NULL,
    status       INTEGER NOT NULL,
    occurred_at  INTEGER NOT NULL,
    body         TEXT    NOT NULL
);
CREATE INDEX events_by_check ON events (check_name, subscription, seq);

-- The most recent results per (check, subscription); older ones are pruned.
CREATE TABLE results (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id   TEXT    NOT NULL,
    check_name   TEXT    NOT NULL,
    subscription TEXT    NOT NULL,
    status       INTEGER NOT NULL,
    started_at   INTEGER NOT NULL,
    received_at  INTEGER NOT NULL,
    body         TEXT    NOT NULL
);
CREATE INDEX results_by_check ON results (check_name, subscription, seq);

-- One row per (event, handler) to deliver; written with the state change.
CREATE TABLE outbox (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id        TEXT    NOT NULL,
    handler         TEXT    NOT NULL,
    incident_key    TEXT    NOT NULL,
    payload         TEXT    NOT NULL,
    state           TEXT    NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'sent', 'dropped')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    last_error      TEXT,
    created_at      INTEGER NOT NULL,
    done_at         INTEGER,
    UNIQUE (event_id, handler)
);
CREATE INDEX outbox_due ON outbox (state, next_attempt_at);
CREATE INDEX outbox_by_incident ON outbox (handler, incident_key, state, seq);

-- Runners declared lost and not back yet, so a restart still sends runner_back.
CREATE TABLE lost_runners (
    runner        TEXT    PRIMARY KEY,
    subscriptions TEXT    NOT NULL,
    interval_secs INTEGER NOT NULL,
    since         INTEGER NOT NULL
);
