-- Each pair's open latency step (handlers::store::rollup): the minute of
-- its newest run as JSON, written with the state; merged into latency_steps
-- when a later minute closes it. NULL until the pair's first run is counted.
ALTER TABLE check_state ADD COLUMN open_step TEXT;
