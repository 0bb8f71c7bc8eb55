-- picket handler state, PostgreSQL. Times are Unix epoch milliseconds (UTC).

-- Per (check, subscription) alerting state: handlers::state::CheckState as JSON.
CREATE TABLE check_state (
    check_name   TEXT    NOT NULL,
    subscription TEXT    NOT NULL,
    state        TEXT    NOT NULL,
    updated_at   BIGINT  NOT NULL,
    PRIMARY KEY (check_name, subscription)
);

-- Every event decided, in order; body is handlers::event::Event as JSON.
CREATE TABLE events (
    seq          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id           TEXT    NOT NULL UNIQUE,
    kind         TEXT    NOT NULL,
    check_name   TEXT    NOT NULL,
    subscription TEXT    NOT NULL,
    runner       TEXT    NOT NULL,
    status       BIGINT  NOT NULL,
    occurred_at  BIGINT  NOT NULL,
    body         TEXT    NOT NULL
);
CREATE INDEX events_by_check ON events (check_name, subscription, seq);

-- The most recent results per (check, subscription); older ones are pruned.
CREATE TABLE results (
    seq          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    request_id   TEXT    NOT NULL,
    check_name   TEXT    NOT NULL,
    subscription TEXT    NOT NULL,
    status       BIGINT  NOT NULL,
    started_at   BIGINT  NOT NULL,
    received_at  BIGINT  NOT NULL,
    body         TEXT    NOT NULL
);
CREATE INDEX results_by_check ON results (check_name, subscription, seq);

-- One row per (event, handler) to deliver; written with the state change.
CREATE TABLE outbox (
    seq             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id        TEXT    NOT NULL,
    handler         TEXT    NOT NULL,
    incident_key    TEXT    NOT NULL,
    payload         TEXT    NOT NULL,
    state           TEXT    NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'sent', 'dropped')),
    attempts        BIGINT  NOT NULL DEFAULT 0,
    next_attempt_at BIGINT  NOT NULL,
    last_error      TEXT,
    created_at      BIGINT  NOT NULL,
    done_at         BIGINT,
    UNIQUE (event_id, handler)
);
CREATE INDEX outbox_due ON outbox (state, next_attempt_at);
CREATE INDEX outbox_by_incident ON outbox (handler, incident_key, state, seq);

-- Runners declared lost and not back yet, so a restart still sends runner_back.
CREATE TABLE lost_runners (
    runner        TEXT    PRIMARY KEY,
    subscriptions TEXT    NOT NULL,
    interval_secs BIGINT  NOT NULL,
    since         BIGINT  NOT NULL
);
