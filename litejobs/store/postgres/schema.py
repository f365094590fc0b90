"""The PostgreSQL store's schema: the SQLite schema's tables and columns (version 8) where they
mean the same, a ``litejobs_meta`` table holding its own version, and its migrations.

Decisions, and why:

- Ids are ``bigint GENERATED ALWAYS AS IDENTITY``: a sequence never hands an id out twice,
  even after the newest jobs were purged (the SQLite store keeps ``job_ids.top`` for that).
- Times are ``double precision`` epoch seconds, as the SQLite store's REAL columns: every row
  reads the same in both stores (``Job``, the CLI, the dashboard and /metrics do arithmetic on
  them as floats), and the server's clock enters as ``extract(epoch FROM
  statement_timestamp())``. ``timestamptz`` would need a conversion at every boundary for no
  gain in meaning.
- Arguments, results, tags and metadata are ``text`` holding JSON, not ``jsonb``: jsonb
  rewrites the text (spacing, key order, duplicate keys), and a job's arguments must reach its
  worker byte for byte as enqueued.
- ``parked`` is a boolean (SQLite's 0/1): a full concurrency key's queued jobs (``parking``).
- The transition trigger repeats ``litejobs.job.TRANSITIONS``, as the SQLite schema's does;
  the workflow triggers (fan-in, cascade) are ``flows.FLOW_TRIGGERS``. There is no unpark
  trigger: the claims give parked jobs back (``parking`` says why).

The schema lives in the connection's current schema (the first of its ``search_path``), so
one database can hold several litejobs stores, one per schema.
"""

from __future__ import annotations

from litejobs.job import TRANSITIONS, State
from litejobs.store.postgres.flows import FLOW_TRIGGERS

__all__ = ["MIGRATIONS", "SCHEMA", "SCHEMA_VERSION"]

#: The PostgreSQL store's own schema version (not the SQLite file's ``user_version``).
SCHEMA_VERSION = 2

_STATES = ", ".join(f"'{s.value}'" for s in State)
_LEGAL_MOVES = "\n        OR ".join(
    f"(OLD.state = '{a.value}' AND NEW.state IN "
    f"({', '.join(repr(b.value) for b in sorted(targets))}))"
    for a, targets in TRANSITIONS.items() if targets
)
_TERMINAL = "'succeeded', 'failed', 'cancelled'"

SCHEMA = f"""
CREATE TABLE jobs (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    task          text    NOT NULL,
    queue         text    NOT NULL,
    state         text    NOT NULL CHECK (state IN ({_STATES})),
    priority      integer NOT NULL DEFAULT 0 CHECK (priority BETWEEN -100 AND 100),
    args          text    NOT NULL,
    kwargs        text    NOT NULL,
    key           text,
    run_at        double precision NOT NULL,
    scheduled_at  double precision NOT NULL,
    created_at    double precision NOT NULL,
    attempt       bigint  NOT NULL DEFAULT 0,
    max_attempts  bigint  NOT NULL CHECK (max_attempts >= 1),
    interrupts    bigint  NOT NULL DEFAULT 0,
    crashes       bigint  NOT NULL DEFAULT 0,
    timeout       double precision,
    expires_at    double precision,
    concurrency_key   text,
    concurrency_limit bigint,
    leased_by     text,
    lease_until   double precision,
    started_at    double precision,
    finished_at   double precision,
    result        text,
    error         text,
    parked        boolean NOT NULL DEFAULT false,
    tags          text,
    progress      double precision CHECK (progress BETWEEN 0 AND 1),
    progress_message text,
    metadata      text,
    workflow      bigint,
    continuation  bigint,
    ready_delay   double precision,
    upstream_left bigint,
    trace         text,
    flow_rate     bigint,
    flow_period   double precision,
    CHECK (state != 'running' OR (leased_by IS NOT NULL AND lease_until IS NOT NULL)),
    CHECK (attempt - interrupts <= max_attempts OR state != 'running')
);
-- parked second: a claim reads (queue, false) in order and never steps over parked jobs.
CREATE INDEX jobs_queued    ON jobs (queue, parked, priority DESC, run_at, id)
    WHERE state = 'queued';
-- Queued jobs with a concurrency key, apart: a claim looks for them at every turn, and
-- without this it would read every queued job of a long backlog to find none; parked second,
-- as in jobs_queued, so that it never steps over a full key's parked jobs.
CREATE INDEX jobs_keyed     ON jobs (queue, parked, priority DESC, run_at, id)
    WHERE state = 'queued' AND concurrency_key IS NOT NULL;
-- Parking a full key's jobs (parked = false) and giving a key's best parked job back
-- (parked = true, the keys with parked jobs found by a skip scan) are one seek each.
CREATE INDEX jobs_parking   ON jobs (parked, concurrency_key, priority DESC, run_at, id)
    WHERE state = 'queued' AND concurrency_key IS NOT NULL;
CREATE INDEX jobs_scheduled ON jobs (run_at) WHERE state = 'scheduled';
CREATE INDEX jobs_running   ON jobs (lease_until) WHERE state = 'running';
-- a claim counts a limited queue's running jobs under its queue row's lock
CREATE INDEX jobs_running_queue ON jobs (queue) WHERE state = 'running';
CREATE INDEX jobs_finished  ON jobs (finished_at) WHERE state IN ({_TERMINAL});
CREATE INDEX jobs_key       ON jobs (task, key, created_at) WHERE key IS NOT NULL;
CREATE INDEX jobs_ckey      ON jobs (concurrency_key)
    WHERE state = 'running' AND concurrency_key IS NOT NULL;
CREATE INDEX jobs_expiry    ON jobs (expires_at)
    WHERE expires_at IS NOT NULL AND state IN ('scheduled', 'queued');
CREATE INDEX jobs_workflow  ON jobs (workflow, id) WHERE workflow IS NOT NULL;

-- The schema repeats TRANSITIONS: no update may move a job along an edge it does not list.
CREATE FUNCTION litejobs_transition() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT ({_LEGAL_MOVES}) THEN
        RAISE EXCEPTION 'litejobs: illegal state transition % -> % (job %)',
            OLD.state, NEW.state, OLD.id;
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER jobs_transition BEFORE UPDATE OF state ON jobs
    FOR EACH ROW WHEN (OLD.state IS DISTINCT FROM NEW.state)
    EXECUTE FUNCTION litejobs_transition();

-- A JSON merge patch (RFC 7396, SQLite's json_patch): a job's progress metadata merges each
-- report into what it had; null removes a key, objects merge all the way down.
CREATE FUNCTION litejobs_merge_patch(target jsonb, patch jsonb) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    k text;
    v jsonb;
    merged jsonb;
BEGIN
    IF jsonb_typeof(patch) IS DISTINCT FROM 'object' THEN
        RETURN patch;
    END IF;
    merged := CASE WHEN jsonb_typeof(target) = 'object' THEN target ELSE '{{}}'::jsonb END;
    FOR k, v IN SELECT * FROM jsonb_each(patch) LOOP
        IF jsonb_typeof(v) = 'null' THEN
            merged := merged - k;
        ELSE
            merged := jsonb_set(merged, ARRAY[k], litejobs_merge_patch(merged -> k, v));
        END IF;
    END LOOP;
    RETURN merged;
END $$;

CREATE TABLE job_tags (
    job_id bigint NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    tag    text   NOT NULL,
    PRIMARY KEY (job_id, tag)
);
CREATE INDEX job_tags_tag ON job_tags (tag, job_id);

CREATE TABLE workflows (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name         text,
    created_at   double precision NOT NULL,
    cancelled_at double precision
);
CREATE TABLE job_deps (
    job_id   bigint  NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    position integer NOT NULL,
    upstream bigint  NOT NULL,
    PRIMARY KEY (job_id, position)
);
CREATE INDEX job_deps_upstream ON job_deps (upstream, job_id);

CREATE TABLE rate_starts (
    queue  text NOT NULL,
    at     double precision NOT NULL,
    job_id bigint
);
CREATE INDEX rate_starts_window ON rate_starts (queue, at);
CREATE INDEX rate_starts_job ON rate_starts (job_id) WHERE job_id IS NOT NULL;

CREATE TABLE attempts (
    job_id      bigint NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    attempt     bigint NOT NULL,
    outcome     text   NOT NULL
                CHECK (outcome IN ('succeeded', 'failed', 'interrupted', 'stale')),
    worker      text,
    started_at  double precision,
    finished_at double precision,
    error       text,
    traceback   text,
    PRIMARY KEY (job_id, attempt)
);

-- A claim locks the row of each queue with a concurrency limit (FOR UPDATE) before it counts
-- the queue's running jobs: that makes the limit exact across claimers on any host.
CREATE TABLE queues (
    name   text PRIMARY KEY,
    paused boolean NOT NULL DEFAULT false
);
CREATE INDEX queues_paused ON queues (name) WHERE paused;

CREATE TABLE cron_entries (
    name         text PRIMARY KEY,
    schedule     text NOT NULL,
    since        double precision NOT NULL,
    last_instant double precision,
    last_job     bigint
);
CREATE TABLE cron_fires (
    entry    text NOT NULL,
    instant  double precision NOT NULL,
    outcome  text NOT NULL
             CHECK (outcome IN ('fired', 'skipped_overlap', 'skipped_misfire')),
    job_id   bigint,
    fired_at double precision NOT NULL,
    PRIMARY KEY (entry, instant)
);
CREATE TABLE supervisors (
    id           text PRIMARY KEY,
    hostname     text NOT NULL,
    pid          bigint NOT NULL,
    started_at   double precision NOT NULL,
    heartbeat_at double precision NOT NULL,
    queues       text NOT NULL,
    pid_ns       text,
    workers      text
);
CREATE TABLE metric_minutes (
    minute bigint NOT NULL,
    name   text   NOT NULL,
    label  text   NOT NULL,
    kind   text   NOT NULL,
    value  double precision NOT NULL,
    PRIMARY KEY (minute, name, label, kind)
);
CREATE TABLE metric_totals (
    name  text NOT NULL,
    label text NOT NULL,
    kind  text NOT NULL,
    value double precision NOT NULL,
    PRIMARY KEY (name, label, kind)
);
CREATE TABLE schedules (
    name       text PRIMARY KEY,
    schedule   text NOT NULL,
    task       text NOT NULL,
    args       text NOT NULL DEFAULT '[]',
    kwargs     text NOT NULL DEFAULT '{{}}',
    timezone   text NOT NULL DEFAULT 'UTC',
    options    text NOT NULL DEFAULT '{{}}',
    created_at double precision NOT NULL,
    updated_at double precision NOT NULL
);
CREATE TABLE flow_starts (
    key    text NOT NULL,
    until  double precision NOT NULL,
    job_id bigint
);
CREATE INDEX flow_starts_window ON flow_starts (key, until);
CREATE INDEX flow_starts_job ON flow_starts (job_id) WHERE job_id IS NOT NULL;
CREATE TABLE flow_waits (
    key   text PRIMARY KEY,
    until double precision NOT NULL,
    since double precision NOT NULL
);
""" + FLOW_TRIGGERS

# Version 1 -> 2: starts not yet known (the SQLite schema's version 8). A rated job sent ahead
# to a worker still running another starts when that job ends, which its claim cannot know:
# its row in `rate_starts` (or `flow_starts`) is written with the time +infinity, which every
# window counts, and its `job_id`, until its supervisor learns when it began
# (``ratestarts.PgRateStartsMixin.record_starts``). The rows already there are known starts.
# And a full key's queued jobs are parked (``parking``): the keyed jobs' index gets `parked`,
# and the index parking and giving back seek in.
_MIGRATE_1_TO_2 = """
ALTER TABLE rate_starts ADD COLUMN job_id bigint;
ALTER TABLE flow_starts ADD COLUMN job_id bigint;
CREATE INDEX rate_starts_job ON rate_starts (job_id) WHERE job_id IS NOT NULL;
CREATE INDEX flow_starts_job ON flow_starts (job_id) WHERE job_id IS NOT NULL;
DROP INDEX jobs_keyed;
CREATE INDEX jobs_keyed     ON jobs (queue, parked, priority DESC, run_at, id)
    WHERE state = 'queued' AND concurrency_key IS NOT NULL;
CREATE INDEX jobs_parking   ON jobs (parked, concurrency_key, priority DESC, run_at, id)
    WHERE state = 'queued' AND concurrency_key IS NOT NULL;
"""

#: ``MIGRATIONS[v]`` takes a schema at version ``v`` to ``v + 1``, inside the transaction
#: that opens the store (under the schema's advisory lock).
MIGRATIONS: dict[int, str] = {1: _MIGRATE_1_TO_2}
