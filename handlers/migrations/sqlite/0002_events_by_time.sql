-- The event log is pruned by age (PICKET_EVENT_RETENTION), hourly.
CREATE INDEX events_by_time ON events (occurred_at);
