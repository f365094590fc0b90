"""The schema of a litejobs file: tables, indexes, the transition trigger, migrations.

The trigger repeats ``litejobs.job.TRANSITIONS``: no update may move a job along an edge the map
does not list. ``application_id`` ("LJOB") tells our files from other programs'; ``user_version``
is the schema version, and a file newer than this code is refused.
"""

from __future__ import annotations

from litejobs.job import TRANSITIONS, State
from litejobs.store.tables import (  # versions 5 to 8
    _FLOWS,
    _METRICS,
    _SCHEDULES,
    _V8_COLUMNS,
    _V8_INDEXES,
)

__all__ = ["APPLICATION_ID", "IDENTITY", "SCHEMA", "SCHEMA_VERSION", "SQLITE_HEADER",
           "TOKEN_TASK"]

SCHEMA_VERSION = 8
#: PRAGMA application_id of a litejobs file ("LJOB"): tells our files from other programs'.
APPLICATION_ID = 0x4C4A4F42
SQLITE_HEADER = b"SQLite format 3\x00"

_STATES = ", ".join(f"'{s.value}'" for s in State)
# A plain boolean per source state: SQLite checks it in well under a microsecond, where a
# row-value `NOT IN (VALUES …)` costs several per update on the hottest statements.
_LEGAL_MOVES = "\n     OR ".join(
    f"(old.state = '{a.value}' AND new.state IN "
    f"({', '.join(repr(b.value) for b in sorted(targets))}))"
    for a, targets in TRANSITIONS.items() if targets
)

# 1: a queued job whose concurrency key was full when a claim looked (see sql.PARK_KEY):
# claims skip it until a job of its key stops running (trigger jobs_unpark). Added to version 1
# files by ALTER TABLE, so it is the last column of every file's jobs table.
_PARKED_COLUMN = "parked INTEGER NOT NULL DEFAULT 0 CHECK (parked IN (0, 1))"

# The best unparked job of the key that fits a slot, when a slot may have come free.
# 3: tags (a JSON array, NULL for none), progress, its message and metadata (a JSON object,
# NULL for none), added to version 2 files by ALTER TABLE after `parked`. A job without tags
# or progress pays nothing but four NULL columns.
_V3_COLUMNS = """
ALTER TABLE jobs ADD COLUMN tags TEXT;
ALTER TABLE jobs ADD COLUMN progress REAL CHECK (progress BETWEEN 0 AND 1);
ALTER TABLE jobs ADD COLUMN progress_message TEXT;
ALTER TABLE jobs ADD COLUMN metadata TEXT;
"""

# One row per (job, tag) of a tagged job, for `app.jobs(tag=...)`: looked up by tag, deleted
# with its job (foreign keys are on in every connection; the primary key serves the cascade).
_JOB_TAGS = """
CREATE TABLE job_tags (
    job_id INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    tag    TEXT    NOT NULL,
    PRIMARY KEY (job_id, tag)
) WITHOUT ROWID;
CREATE INDEX job_tags_tag ON job_tags (tag, job_id);
"""

_UNPARK_ONE = """
UPDATE jobs SET parked = 0 WHERE id = (
    SELECT id FROM jobs
    WHERE state = 'queued' AND parked = 1 AND concurrency_key = old.concurrency_key
      AND coalesce(concurrency_limit, 1) > (
          SELECT count(*) FROM jobs WHERE state = 'running'
          AND concurrency_key = old.concurrency_key)
    ORDER BY priority DESC, run_at, id LIMIT 1);
"""

# The indexes of version 1 that version 2 keeps as they are.
_UNCHANGED_INDEXES = """
CREATE INDEX jobs_scheduled ON jobs (run_at) WHERE state = 'scheduled';
CREATE INDEX jobs_running   ON jobs (lease_until) WHERE state = 'running';
CREATE INDEX jobs_finished  ON jobs (finished_at)
    WHERE state IN ('succeeded', 'failed', 'cancelled');
-- No index on task: it would cost every enqueue ~12% for the CLI's --task filters, which
-- scan newest first and stop at their limit.
CREATE INDEX jobs_key       ON jobs (task, key, created_at) WHERE key IS NOT NULL;
CREATE INDEX jobs_ckey      ON jobs (concurrency_key)
    WHERE state = 'running' AND concurrency_key IS NOT NULL;
CREATE INDEX jobs_expiry    ON jobs (expires_at)
    WHERE expires_at IS NOT NULL AND state IN ('scheduled', 'queued');
"""

# Job ids are never handed out twice: a new job takes max(top, max(id)) + 1 (sql.INSERT_JOBS),
# and `top` keeps the highest id a deleted job had. SQLite's own rule (max(id) + 1) gave the
# ids of the newest jobs again after they were purged or pruned, and stored ids and cron's
# last fire then named a stranger. AUTOINCREMENT would do it too, but it writes
# sqlite_sequence on every insert: -13% on one-by-one enqueues (durability fast).
_JOB_IDS = """
CREATE TABLE job_ids (top INTEGER NOT NULL);
INSERT INTO job_ids (top) VALUES (0);
CREATE TRIGGER jobs_deleted AFTER DELETE ON jobs WHEN old.id > (SELECT top FROM job_ids)
BEGIN
    UPDATE job_ids SET top = old.id;
END;
"""
_TOP_STORED_ID = """SELECT max(coalesce((SELECT max(id) FROM jobs), 0),
                  coalesce((SELECT max(job_id) FROM cron_fires), 0),
                  coalesce((SELECT max(last_job) FROM cron_entries), 0))"""

_JOBS_INDEXES_AND_TRIGGERS = f"""
-- parked second: a claim reads (queue, 0) in order and never steps over parked jobs.
CREATE INDEX jobs_queued    ON jobs (queue, parked, priority DESC, run_at, id)
    WHERE state = 'queued';
{_UNCHANGED_INDEXES}
-- Queued jobs with a concurrency key: parking a full key's jobs (parked = 0) and giving the
-- best parked one back (parked = 1) are one seek each.
CREATE INDEX jobs_keyed     ON jobs (parked, concurrency_key, priority DESC, run_at, id)
    WHERE state = 'queued' AND concurrency_key IS NOT NULL;

-- The schema repeats TRANSITIONS: no update may move a job along an edge it does not list.
CREATE TRIGGER jobs_transition BEFORE UPDATE OF state ON jobs
WHEN old.state != new.state AND NOT ({_LEGAL_MOVES})
BEGIN
    SELECT RAISE(ABORT, 'litejobs: illegal state transition');
END;

-- A slot of a concurrency key may have come free: a running job of the key stopped running,
-- or a queued one that a claim could take left the queue without running (cancelled,
-- expired, debounced). Its best parked job that fits goes back to the claims. Triggers, so
-- that every path (outcomes, rescue, cancel, drain) does it in its own transaction.
CREATE TRIGGER jobs_unpark AFTER UPDATE OF state ON jobs
WHEN old.concurrency_key IS NOT NULL AND new.state != 'running'
     AND (old.state = 'running' OR (old.state = 'queued' AND old.parked = 0))
BEGIN
{_UNPARK_ONE}
END;

-- A parked job that leaves the queue (cancelled, expired, debounced) is parked no more: when
-- it comes back (retry, promote) a claim looks at it afresh.
CREATE TRIGGER jobs_parked_leave AFTER UPDATE OF state ON jobs
WHEN old.parked = 1 AND new.state != 'queued'
BEGIN
    UPDATE jobs SET parked = 0 WHERE id = new.id;
END;
"""

# 4: workflows. `workflow` is the run a step (or a token, or a job that continued) belongs
# to, NULL for a plain job: the triggers below test it first, so a plain job's outcome pays
# one NULL check. `continuation`: the job whose result is this job's result (it returned
# litejobs.then). `ready_delay`: a step's delay, counted from the moment it becomes ready.
# `upstream_left`: how many of a waiting step's upstream steps have not succeeded (see
# jobs_fan_in).
_V4_COLUMNS = """
ALTER TABLE jobs ADD COLUMN workflow INTEGER;
ALTER TABLE jobs ADD COLUMN continuation INTEGER;
ALTER TABLE jobs ADD COLUMN ready_delay REAL;
ALTER TABLE jobs ADD COLUMN upstream_left INTEGER;
"""

#: The task name of a token (a waitpoint): a row of its own, in state waiting until it is
#: completed (succeeded, its data the result) or its timeout passes (failed).
TOKEN_TASK = "litejobs.token"

# When a step becomes ready: its delay after the success that readied it (on the clock of
# whoever recorded that success), or its absolute run_at (ready_delay NULL).
_READY_AT = ("(CASE WHEN ready_delay IS NULL THEN max(run_at, new.finished_at) "
             "ELSE new.finished_at + ready_delay END)")

# Each edge: `job_id` starts once `upstream` succeeded; `position` orders its upstream results
# (current_job().results()). Looked up both ways: a step's upstream, an upstream's steps.
_WORKFLOWS = f"""
CREATE TABLE workflows (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    name         TEXT,
    created_at   REAL NOT NULL,
    cancelled_at REAL
);
CREATE TABLE job_deps (
    job_id   INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    upstream INTEGER NOT NULL,
    PRIMARY KEY (job_id, position)
) WITHOUT ROWID;
CREATE INDEX job_deps_upstream ON job_deps (upstream, job_id);
CREATE INDEX jobs_workflow ON jobs (workflow, id) WHERE workflow IS NOT NULL;
CREATE INDEX jobs_waiting_expiry ON jobs (expires_at)
    WHERE state = 'waiting' AND expires_at IS NOT NULL;

-- Fan-in. The success of a step readies each waiting step downstream of it whose upstream
-- steps have now all succeeded: queued, or scheduled when its delay (counted from that
-- success) or its run_at is ahead. In the transaction that records the success, whoever
-- records it (a supervisor's outcome, a token's completion), so a fan-in can neither fire
-- twice nor never. Times count from the success's finished_at: the recorder's clock.
-- `upstream_left` spares each success a look at every edge of a 10,000-way fan-in: it is
-- set exactly when the step is written or revived (store.flows), in the transaction that
-- writes its edges, and goes down here once per upstream step, whose success happens once
-- (succeeded is terminal). Where it reaches zero, the edges themselves are checked before
-- the step is readied, so a wrong count could delay a step, never start one early.
CREATE TRIGGER jobs_fan_in AFTER UPDATE OF state ON jobs
WHEN new.workflow IS NOT NULL AND new.state = 'succeeded' AND old.state != 'succeeded'
BEGIN
    UPDATE jobs SET upstream_left = upstream_left - 1
    WHERE state = 'waiting' AND id IN (SELECT job_id FROM job_deps WHERE upstream = new.id);
    UPDATE jobs SET
        state = CASE WHEN {_READY_AT} > new.finished_at THEN 'scheduled' ELSE 'queued' END,
        run_at = {_READY_AT},
        scheduled_at = {_READY_AT},
        expires_at = expires_at - run_at + {_READY_AT}
    WHERE state = 'waiting' AND task != '{TOKEN_TASK}'
      AND id IN (SELECT job_id FROM job_deps WHERE upstream = new.id)
      AND upstream_left <= 0
      AND NOT EXISTS (SELECT 1 FROM job_deps d JOIN jobs u ON u.id = d.upstream
                      WHERE d.job_id = jobs.id AND u.state != 'succeeded');
END;

-- A step that failed or was cancelled cancels every step waiting downstream of it (all the
-- way down: one statement, as a trigger does not fire itself), naming itself as the reason;
-- a retry of it puts them back to waiting (store.workflows).
CREATE TRIGGER jobs_cascade AFTER UPDATE OF state ON jobs
WHEN new.workflow IS NOT NULL AND new.state IN ('failed', 'cancelled')
     AND old.state != new.state
BEGIN
    UPDATE jobs SET state = 'cancelled', finished_at = new.finished_at,
        error = 'upstream step ' || new.id || ' ' || new.state
    WHERE state = 'waiting' AND id IN (
        WITH RECURSIVE down (id) AS (
            SELECT d.job_id FROM job_deps d JOIN jobs w ON w.id = d.job_id
            WHERE d.upstream = new.id AND w.state = 'waiting'
            UNION
            SELECT d.job_id FROM down JOIN job_deps d ON d.upstream = down.id
            JOIN jobs w ON w.id = d.job_id WHERE w.state = 'waiting')
        SELECT id FROM down);
END;
"""

_QUEUES_PAUSED = """
-- Claims read the paused queues only, however many queue names there are.
CREATE INDEX queues_paused ON queues (name) WHERE paused != 0;
"""

SCHEMA = f"""
CREATE TABLE jobs (
    id            INTEGER PRIMARY KEY,
    task          TEXT    NOT NULL,
    queue         TEXT    NOT NULL,
    state         TEXT    NOT NULL CHECK (state IN ({_STATES})),
    priority      INTEGER NOT NULL DEFAULT 0 CHECK (priority BETWEEN -100 AND 100),
    args          TEXT    NOT NULL,
    kwargs        TEXT    NOT NULL,
    key           TEXT,
    run_at        REAL    NOT NULL,
    scheduled_at  REAL    NOT NULL,
    created_at    REAL    NOT NULL,
    attempt       INTEGER NOT NULL DEFAULT 0,
    max_attempts  INTEGER NOT NULL CHECK (max_attempts >= 1),
    interrupts    INTEGER NOT NULL DEFAULT 0,
    crashes       INTEGER NOT NULL DEFAULT 0,
    timeout       REAL,
    expires_at    REAL,
    concurrency_key   TEXT,
    concurrency_limit INTEGER,
    leased_by     TEXT,
    lease_until   REAL,
    started_at    REAL,
    finished_at   REAL,
    result        TEXT,
    error         TEXT,
    {_PARKED_COLUMN},
    tags          TEXT,
    progress      REAL CHECK (progress BETWEEN 0 AND 1),
    progress_message TEXT,
    metadata      TEXT,
    workflow      INTEGER,
    continuation  INTEGER,
    ready_delay   REAL,
    upstream_left INTEGER,
    trace         TEXT,
    flow_rate     INTEGER,
    flow_period   REAL,
    CHECK (state != 'running' OR (leased_by IS NOT NULL AND lease_until IS NOT NULL)),
    CHECK (attempt - interrupts <= max_attempts OR state != 'running')
);
{_JOBS_INDEXES_AND_TRIGGERS}
{_JOB_IDS}
{_JOB_TAGS}
{_WORKFLOWS}

-- Start times of rate-limited queues' jobs: the sliding window each claim counts (and, from
-- version 8, job_id: a start not yet known, at = +infinity; see tables.py).
CREATE TABLE rate_starts (
    queue TEXT NOT NULL,
    at    REAL NOT NULL
);
CREATE INDEX rate_starts_window ON rate_starts (queue, at);

CREATE TABLE attempts (
    job_id      INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    attempt     INTEGER NOT NULL,
    outcome     TEXT    NOT NULL
                CHECK (outcome IN ('succeeded', 'failed', 'interrupted', 'stale')),
    worker      TEXT,
    started_at  REAL,
    finished_at REAL,
    error       TEXT,
    traceback   TEXT,
    PRIMARY KEY (job_id, attempt)
) WITHOUT ROWID;

CREATE TABLE queues (
    name   TEXT PRIMARY KEY,
    paused INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
{_QUEUES_PAUSED}

-- One row per cron entry: its schedule as last seen and the newest instant it handled.
CREATE TABLE cron_entries (
    name         TEXT PRIMARY KEY,
    schedule     TEXT NOT NULL,
    since        REAL NOT NULL,
    last_instant REAL,
    last_job     INTEGER
) WITHOUT ROWID;

-- The exactly-once guarantee: an (entry, instant) row is written in the same transaction as
-- the job it fires, so no instant can make two jobs, across restarts and supervisors.
CREATE TABLE cron_fires (
    entry    TEXT NOT NULL,
    instant  REAL NOT NULL,
    outcome  TEXT NOT NULL CHECK (outcome IN ('fired', 'skipped_overlap', 'skipped_misfire')),
    job_id   INTEGER,
    fired_at REAL NOT NULL,
    PRIMARY KEY (entry, instant)
) WITHOUT ROWID;

-- pid_ns: the supervisor's PID namespace (device:inode of /proc/self/ns/pid); its pid means
-- something only to a process in the same namespace on the same host.
CREATE TABLE supervisors (
    id           TEXT PRIMARY KEY,
    hostname     TEXT NOT NULL,
    pid          INTEGER NOT NULL,
    started_at   REAL NOT NULL,
    heartbeat_at REAL NOT NULL,
    queues       TEXT NOT NULL,
    pid_ns       TEXT,
    workers      TEXT
) WITHOUT ROWID;
{_METRICS}
{_SCHEDULES}
{_FLOWS}
{_V8_COLUMNS}
{_V8_INDEXES}
"""

IDENTITY = (
    "SELECT (SELECT application_id FROM pragma_application_id()), "
    "(SELECT user_version FROM pragma_user_version()), "
    "(SELECT count(*) FROM sqlite_schema WHERE name NOT LIKE 'sqlite_%')"
)
