-- Every runner heard and not stopped cleanly, with its last keepalive on the
-- clock of the handler that received it: a standby that takes over the
-- keepalive queue continues liveness from here instead of from nothing.
CREATE TABLE runners (
    runner        TEXT    PRIMARY KEY,
    subscriptions TEXT    NOT NULL,
    interval_secs INTEGER NOT NULL,
    last_seen     INTEGER NOT NULL
);

-- A request has one result: a redelivered one is recorded once, also when it
-- arrives after a newer one (it then joins the history without touching the state).
-- Duplicates cannot have been written, but a migration must not fail on one.
DELETE FROM results WHERE seq NOT IN (SELECT min(seq) FROM results GROUP BY request_id);
CREATE UNIQUE INDEX results_by_request ON results (request_id);
