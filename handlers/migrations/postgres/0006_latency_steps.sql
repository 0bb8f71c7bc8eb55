-- Latency history (handlers::store::history): one row per (check,
-- subscription, step size, step start), upserted in the transaction of the
-- result batch. Times are Unix ms. total and phases hold exact duration
-- counts (JSON {"ms": count}, phases {"dns": {"ms": count}, ...}) so steps
-- merge without losing exactness; percentiles are derived on read.
CREATE TABLE latency_steps (
    check_name   TEXT    NOT NULL,
    subscription TEXT    NOT NULL,
    step_ms      BIGINT  NOT NULL,
    start_ms     BIGINT  NOT NULL,
    runs         BIGINT  NOT NULL,
    warning      BIGINT  NOT NULL,
    critical     BIGINT  NOT NULL,
    unknown      BIGINT  NOT NULL,
    total        TEXT    NOT NULL,
    phases       TEXT    NOT NULL,
    PRIMARY KEY (check_name, subscription, step_ms, start_ms)
);
CREATE INDEX latency_steps_by_start ON latency_steps (step_ms, start_ms);
