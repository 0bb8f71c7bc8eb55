-- PagerDuty storm summaries (handlers::store::storms): each open summary
-- incident of a handler, how many of the incidents it covers are still
-- open, and which they are. Written when the summary's trigger is settled;
-- the resolve of the last covered incident deletes the storm and queues the
-- summary's resolve in the outbox, in the same transaction.
CREATE TABLE storms (
    handler   TEXT   NOT NULL,
    storm_key TEXT   NOT NULL,
    open      BIGINT NOT NULL,
    PRIMARY KEY (handler, storm_key)
);
CREATE TABLE storm_members (
    handler      TEXT NOT NULL,
    incident_key TEXT NOT NULL,
    storm_key    TEXT NOT NULL,
    PRIMARY KEY (handler, incident_key)
);
