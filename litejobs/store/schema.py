"""The schema of a litejobs file: tables, indexes, the transition trigger, migrations.

The trigger repeats ``litejobs.job.TRANSITIONS``: no update may move a job along an edge the map
does not list. ``application_id`` ("LJOB") tells our files from other programs'; ``user_version``
is the schema version, and a file newer than this code is refused.
"""

from __future__ import annotations

from litejobs.job import TRANSITIONS, State

__all__ = ["APPLICATION_ID", "IDENTITY", "MIGRATIONS", "SCHEMA", "SCHEMA_VERSION",
           "SQLITE_HEADER"]

SCHEMA_VERSION = 1
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
    CHECK (state != 'running' OR (leased_by IS NOT NULL AND lease_until IS NOT NULL)),
    CHECK (attempt - interrupts <= max_attempts OR state != 'running')
);
CREATE INDEX jobs_queued    ON jobs (queue, priority DESC, run_at, id) WHERE state = 'queued';
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

-- Start times of rate-limited queues' jobs: the sliding window each claim counts.
CREATE TABLE rate_starts (
    queue TEXT NOT NULL,
    at    REAL NOT NULL
);
CREATE INDEX rate_starts_window ON rate_starts (queue, at);

-- The schema repeats TRANSITIONS: no update may move a job along an edge it does not list.
CREATE TRIGGER jobs_transition BEFORE UPDATE OF state ON jobs
WHEN old.state != new.state AND NOT ({_LEGAL_MOVES})
BEGIN
    SELECT RAISE(ABORT, 'litejobs: illegal state transition');
END;

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

CREATE TABLE supervisors (
    id           TEXT PRIMARY KEY,
    hostname     TEXT NOT NULL,
    pid          INTEGER NOT NULL,
    started_at   REAL NOT NULL,
    heartbeat_at REAL NOT NULL,
    queues       TEXT NOT NULL
) WITHOUT ROWID;
"""

#: Migrations from version N to N+1, by N. Each runs inside the upgrading transaction.
MIGRATIONS: dict[int, str] = {}

IDENTITY = (
    "SELECT (SELECT application_id FROM pragma_application_id()), "
    "(SELECT user_version FROM pragma_user_version()), "
    "(SELECT count(*) FROM sqlite_schema WHERE name NOT LIKE 'sqlite_%')"
)
