"""The tables of schema versions 5 to 8 (operating, schedules, flow keys, starts not yet
known): what schema.py's SCHEMA and the migrations that add them to older files share."""

from __future__ import annotations

__all__: list[str] = []

# 5: what operators look at. `trace`: the W3C traceparent of the span that enqueued the job
# (OpenTelemetry; NULL without it). Supervisors' `workers`: a JSON array, one object per
# worker (written with the heartbeat). Per-minute figures that supervisors add up in their
# batched transaction (outcomes per task, durations and pickup delays as histogram buckets,
# cron fires): charts read the recent minutes, which are pruned; `metric_totals` keeps the
# sums of every minute ever counted, the Prometheus counters, which must never go down.
_V5_COLUMNS = """
ALTER TABLE jobs ADD COLUMN trace TEXT;
ALTER TABLE supervisors ADD COLUMN workers TEXT;
"""
_METRICS = """
CREATE TABLE metric_minutes (
    minute INTEGER NOT NULL,  -- unix time // 60
    name   TEXT    NOT NULL,  -- which figure: 'outcome', 'duration', 'pickup', 'cron'
    label  TEXT    NOT NULL,  -- what it is about: a task, a queue, a cron entry
    kind   TEXT    NOT NULL,  -- an outcome, a bucket's upper bound, 'sum', 'count'
    value  REAL    NOT NULL,
    PRIMARY KEY (minute, name, label, kind)
) WITHOUT ROWID;
CREATE TABLE metric_totals (
    name  TEXT NOT NULL,
    label TEXT NOT NULL,
    kind  TEXT NOT NULL,
    value REAL NOT NULL,
    PRIMARY KEY (name, label, kind)
) WITHOUT ROWID;
"""

# 6: cron entries made at run time (app.schedule, `litejobs cron add`, POST /api/v1/schedules),
# stored beside the TOML and decorator ones: the same exactly-once and DST rules through
# cron_entries/cron_fires. `options`: a JSON object of the entry's other settings (queue,
# priority, misfire, catchup, overlap, ...), as litejobs.toml's [cron.NAME] spells them.
_SCHEDULES = """
CREATE TABLE schedules (
    name       TEXT PRIMARY KEY,
    schedule   TEXT NOT NULL,
    task       TEXT NOT NULL,
    args       TEXT NOT NULL DEFAULT '[]',
    kwargs     TEXT NOT NULL DEFAULT '{}',
    timezone   TEXT NOT NULL DEFAULT 'UTC',
    options    TEXT NOT NULL DEFAULT '{}',
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
) WITHOUT ROWID;
"""

# 7: flow keys' rates (issue 14). A job's key (`concurrency_key`, which `flow_key` sets) may
# carry a rate: at most `flow_rate` starts of the key in any `flow_period` seconds (NULL: no
# rate). `flow_starts`: each start of a rated job, kept until `until` (its start + the window),
# the sliding window a claim counts. `flow_waits`: a key whose window was full when a claim
# looked, with the moment it has room again and the moment that was found (a wall clock
# stepped back since makes a claim look again: it then counts the key's starts from now); its
# queued jobs are parked meanwhile, so claims skip them without reading them, and the first
# claim at or after `until` gives back as many as the window has room for
# (flowkeys.FlowKeysMixin._flow_due).
_V7_COLUMNS = """
ALTER TABLE jobs ADD COLUMN flow_rate INTEGER;
ALTER TABLE jobs ADD COLUMN flow_period REAL;
"""
_FLOWS = """
CREATE TABLE flow_starts (
    key   TEXT NOT NULL,
    until REAL NOT NULL
);
CREATE INDEX flow_starts_window ON flow_starts (key, until);
CREATE INDEX flow_starts_until ON flow_starts (until);
CREATE TABLE flow_waits (
    key   TEXT PRIMARY KEY,
    until REAL NOT NULL,
    since REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX flow_waits_until ON flow_waits (until);
CREATE INDEX flow_waits_since ON flow_waits (since);
"""

# 8: starts not yet known. A rated job sent ahead to a worker that still runs another job
# starts when that job ends, which its claim cannot know: its row in `rate_starts` (or
# `flow_starts`) is written with the time +infinity, which every window counts, and its
# `job_id`; the supervisor that learns the job began sets the time (Tx.record_starts) and clears
# `job_id`. A row of a known start has job_id NULL, so the index holds only the unknown ones.
# Fresh files get the columns by the same ALTER TABLE: one shape whatever a file's history.
_V8_COLUMNS = """
ALTER TABLE rate_starts ADD COLUMN job_id INTEGER;
ALTER TABLE flow_starts ADD COLUMN job_id INTEGER;
"""
_V8_INDEXES = """
CREATE INDEX rate_starts_job ON rate_starts (job_id) WHERE job_id IS NOT NULL;
CREATE INDEX flow_starts_job ON flow_starts (job_id) WHERE job_id IS NOT NULL;
"""
