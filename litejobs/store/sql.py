"""Every SQL statement litejobs runs, each a named constant (schema DDL lives in ``schema``,
flow keys' rate statements beside their code in ``flowkeys``).

The transaction code beside them is in ``tx`` (a supervisor's write transaction) and in the
package's ``Store`` (producers, readers, upkeep).
"""

from __future__ import annotations

from litejobs.job import State, sources

JOB_COLUMNS = (
    "id, task, queue, state, priority, args, kwargs, key, run_at, scheduled_at, created_at, "
    "attempt, max_attempts, interrupts, crashes, timeout, expires_at, concurrency_key, "
    "concurrency_limit, leased_by, lease_until, "
    "started_at, finished_at, result, error, tags, progress, progress_message, metadata, "
    "workflow, continuation, flow_rate, flow_period"
)

# A new job's id: above every id in the table and every id a deleted job had (schema
# job_ids), so that no id is ever handed out twice.
_NEXT_ID = "(SELECT max(top, coalesce((SELECT max(id) FROM jobs), 0)) FROM job_ids)"
# One job (its id: last_insert_rowid), or many with executemany (ids are contiguous).
INSERT_JOBS = f"""
INSERT INTO jobs (id, task, queue, state, priority, args, kwargs, key, run_at, scheduled_at,
                  created_at, max_attempts, timeout, expires_at, concurrency_key,
                  concurrency_limit)
VALUES ({_NEXT_ID} + 1, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
"""
# INSERT_JOBS for a NewJobs: one row per element of a JSON array of argument lists (or of
# [args, kwargs] pairs), in array order. SQLite keeps each element's JSON text as written.
# (?13: the top id before, TOP_JOB_ID; the element's index in the array counts up from it)
# (?14, ?15: the flow key's rate, NULL for none)
INSERT_JOBS_JSON = """
INSERT INTO jobs (id, task, queue, state, priority, args, kwargs, key, run_at, scheduled_at,
                  created_at, max_attempts, timeout, expires_at, concurrency_key,
                  concurrency_limit, flow_rate, flow_period)
SELECT ?13 + key + 1, ?1, ?2, ?3, ?4, value, '{}', NULL, ?5, ?5, ?6, ?7, ?8, ?9, ?10, ?11,
       ?14, ?15
FROM json_each(?12)
"""
INSERT_JOBS_JSON_KW = """
INSERT INTO jobs (id, task, queue, state, priority, args, kwargs, key, run_at, scheduled_at,
                  created_at, max_attempts, timeout, expires_at, concurrency_key,
                  concurrency_limit, flow_rate, flow_period)
SELECT ?13 + key + 1, ?1, ?2, ?3, ?4, value -> 0, value -> 1, NULL, ?5, ?5, ?6, ?7, ?8, ?9,
       ?10, ?11, ?14, ?15
FROM json_each(?12)
"""
# A tagged, traced or rated job: INSERT_JOBS with its tags (a JSON array, then one job_tags
# row per tag), its trace (the enqueuing span's traceparent) and its flow key's rate (starts
# per period), any of them NULL.
INSERT_TAGGED_JOB = f"""
INSERT INTO jobs (id, task, queue, state, priority, args, kwargs, key, run_at, scheduled_at,
                  created_at, max_attempts, timeout, expires_at, concurrency_key,
                  concurrency_limit, tags, trace, flow_rate, flow_period)
VALUES ({_NEXT_ID} + 1, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
"""
INSERT_JOB_TAGS = "INSERT OR IGNORE INTO job_tags (job_id, tag) SELECT ?, value FROM json_each(?)"
# The clause of a job list filtered by tag (store.reads.list_jobs).
HAS_TAG = "id IN (SELECT job_id FROM job_tags WHERE tag = ?)"
# The top of the ids handed out so far: new rows take the ids above it.
TOP_JOB_ID = f"SELECT {_NEXT_ID}"
IDS_ABOVE = "SELECT id FROM jobs WHERE id > ? ORDER BY id"
INSERT_QUEUE = "INSERT OR IGNORE INTO queues (name) VALUES (?)"
FIND_KEY = f"""
SELECT {JOB_COLUMNS} FROM jobs
WHERE task = ? AND key = ? AND created_at >= ? AND state NOT IN ('failed', 'cancelled')
ORDER BY id DESC LIMIT 1
"""
DEBOUNCE = """
UPDATE jobs SET state = 'scheduled', run_at = ?, scheduled_at = ?, args = ?, kwargs = ?,
                expires_at = ?
WHERE id = ? AND state IN ('scheduled', 'queued')
"""
SELECT_JOB = f"SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?"
# Running jobs' newest progress, many at once: a JSON array of [id, attempt, fraction or null,
# message or null, metadata object or null]. Fenced like outcomes: only the running attempt.
SET_PROGRESS_MANY = """
WITH u (id, attempt, fraction, message, metadata) AS (
    SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value -> 4 FROM json_each(?))
UPDATE jobs SET
    progress = coalesce(u.fraction, jobs.progress),
    progress_message = CASE WHEN u.fraction IS NULL THEN jobs.progress_message
                            ELSE u.message END,
    metadata = CASE WHEN u.metadata = 'null' THEN jobs.metadata
                    ELSE json_patch(coalesce(jobs.metadata, '{}'), u.metadata) END
FROM u
WHERE jobs.id = u.id AND jobs.attempt = u.attempt AND jobs.state = 'running'
"""
SELECT_ATTEMPTS = (
    "SELECT attempt, outcome, worker, started_at, finished_at, error, traceback "
    "FROM attempts WHERE job_id = ? ORDER BY attempt"
)
SELECT_FOR_CANCEL = "SELECT state, attempt, started_at, leased_by FROM jobs WHERE id = ?"
CANCEL_JOB = f"""
UPDATE jobs SET state = 'cancelled', error = ?, finished_at = ?, leased_by = NULL,
                lease_until = NULL
WHERE id = ? AND state IN ({", ".join(f"'{s.value}'" for s in sources(State.CANCELLED))})
"""
SELECT_QUEUES = "SELECT name, paused FROM queues ORDER BY name"
# The distinct queues of queued jobs, one index seek each (a loose index scan): what a claim
# visits, so that queue names with nothing queued (however many) cost it nothing.
_QUEUED_NAMES = """
WITH RECURSIVE seen (name) AS (
    SELECT min(queue) FROM jobs WHERE state = 'queued'
    UNION ALL
    SELECT (SELECT min(queue) FROM jobs WHERE state = 'queued' AND queue > seen.name)
    FROM seen WHERE seen.name IS NOT NULL
)
"""
# With the paused queues (flag 1) in the same statement: one statement less in every turn.
QUEUES_TO_VISIT = _QUEUED_NAMES + """
SELECT name, 0 FROM seen WHERE name IS NOT NULL
UNION ALL
SELECT name, 1 FROM queues WHERE paused != 0
"""
# Parked jobs (their key was full) are not candidates: the index puts them apart.
CLAIM_CANDIDATES = """
SELECT id, priority, run_at, concurrency_key, concurrency_limit, expires_at IS NOT NULL,
       flow_rate, flow_period
FROM jobs
WHERE state = 'queued' AND queue = ? AND parked = 0 AND (expires_at IS NULL OR expires_at >= ?)
ORDER BY priority DESC, run_at, id
LIMIT ?
"""
# A claim found key ? full with ? jobs running: its queued jobs that cannot run until one of
# them stops are parked (jobs_unpark gives them back one by one as slots come free).
PARK_KEY = """
UPDATE jobs SET parked = 1
WHERE id IN (SELECT id FROM jobs WHERE state = 'queued' AND parked = 0 AND concurrency_key = ?
             AND coalesce(concurrency_limit, 1) <= ? LIMIT ?)
"""
# The safety net under jobs_unpark: each key with parked jobs and a free slot gets its best
# parked job back that fits (for a slot freed when the job given back could not be claimed:
# its queue paused or not served). One seek per key with parked jobs. A key waiting for room
# in its rate window (flow_waits) is left alone: its wait gives its jobs back.
UNPARK_FREE = """
WITH RECURSIVE k (ckey) AS (
    SELECT min(concurrency_key) FROM jobs
    WHERE state = 'queued' AND parked = 1 AND concurrency_key IS NOT NULL
    UNION ALL
    SELECT (SELECT min(concurrency_key) FROM jobs
            WHERE state = 'queued' AND parked = 1 AND concurrency_key > k.ckey)
    FROM k WHERE k.ckey IS NOT NULL
)
UPDATE jobs SET parked = 0 WHERE id IN (
    SELECT (SELECT p.id FROM jobs p
            WHERE p.state = 'queued' AND p.parked = 1 AND p.concurrency_key = k.ckey
              AND coalesce(p.concurrency_limit, 1) > (
                  SELECT count(*) FROM jobs r
                  WHERE r.state = 'running' AND r.concurrency_key = k.ckey)
            ORDER BY p.priority DESC, p.run_at, p.id LIMIT 1)
    FROM k WHERE k.ckey IS NOT NULL
      AND NOT EXISTS (SELECT 1 FROM flow_waits w WHERE w.key = k.ckey))
"""
COUNT_WITH_KEY = "SELECT count(*) FROM jobs WHERE state = 'running' AND concurrency_key = ?"
RUNNING_BY_QUEUE = "SELECT queue, count(*) FROM jobs WHERE state = 'running' GROUP BY queue"
# Starts recorded "in the future" (the wall clock stepped back since) count as starting now:
# left as they are they would keep the window full until the clock caught up. Starts not yet
# known (job_id set, at = +infinity) wait for their time (RATE_STARTED).
RATE_CLAMP = "UPDATE rate_starts SET at = ?2 WHERE queue = ?1 AND at > ?2 AND job_id IS NULL"
# The starts a window counts, and the oldest of known time (NULL when all are not yet known).
RATE_WINDOW = """
SELECT count(*), min(at) FILTER (WHERE job_id IS NULL) FROM rate_starts WHERE queue = ? AND at > ?
"""
RATE_OLDEST = "SELECT min(at) FROM rate_starts WHERE queue = ? AND at > ? AND job_id IS NULL"
RATE_FORGET = "DELETE FROM rate_starts WHERE queue = ? AND at <= ?"
# One row per job id of a JSON array; job_id kept (?3 true) for starts not yet known.
RATE_START_MANY = """
INSERT INTO rate_starts (queue, at, job_id)
SELECT ?1, ?2, CASE WHEN ?3 THEN value END FROM json_each(?4)
"""
# A job sent ahead began (its supervisor saw the job before it end) at ?1; or it was given
# back unstarted (RATE_UNCLAIMED), or it stopped running with its start never reported: a
# supervisor or worker died (RATE_LEFT, at ?1 = now: it may have begun any time before).
RATE_STARTED = "UPDATE rate_starts SET at = ?, job_id = NULL WHERE job_id = ?"
# RATE_STARTED for many: a JSON array of [job id, time] (one index seek each).
RATE_STARTED_MANY = """
UPDATE rate_starts SET at = s.value ->> 1, job_id = NULL
FROM json_each(?) AS s WHERE rate_starts.job_id = s.value ->> 0
"""
RATE_UNCLAIMED = "DELETE FROM rate_starts WHERE job_id = ?"
RATE_LEFT = """
UPDATE rate_starts SET at = ?, job_id = NULL
WHERE job_id IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM jobs WHERE jobs.id = rate_starts.job_id AND state = 'running')
"""
EXPIRE_DUE = """
UPDATE jobs SET state = 'cancelled', finished_at = ?,
    error = 'expired: not started within ' || printf('%g', expires_at - run_at)
            || ' s of its run time'
WHERE id IN (SELECT id FROM jobs WHERE expires_at IS NOT NULL AND expires_at < ?
             AND state IN ('scheduled', 'queued') LIMIT ?)
"""
# The same loose index scan (a plain DISTINCT reads every queued job's index entry, which
# stalled a 1M-job backlog for ~0.2 s).
ADOPT_QUEUES = _QUEUED_NAMES + (
    "INSERT OR IGNORE INTO queues (name) SELECT name FROM seen WHERE name IS NOT NULL")
SET_PAUSED = """
INSERT INTO queues (name, paused) VALUES (?, ?)
ON CONFLICT (name) DO UPDATE SET paused = excluded.paused
"""
# Claimed rows hand these columns to a worker as bytes: a row written outside litejobs with
# text that is not UTF-8 then fails its own job (the worker cannot decode it) instead of
# raising in the claim that reads it, which would stop every other job's claim too.
_CLAIMED_TEXT = ("CAST(task AS BLOB) AS task, CAST(queue AS BLOB) AS queue, "
                 "CAST(args AS BLOB) AS args, CAST(kwargs AS BLOB) AS kwargs")
CLAIM = f"""
UPDATE jobs SET state = 'running', attempt = attempt + 1, leased_by = ?, lease_until = ?,
                started_at = ?
WHERE id = ? AND state = 'queued'
RETURNING id, {_CLAIMED_TEXT}, attempt, max_attempts, interrupts, crashes, timeout,
          scheduled_at, leased_by, priority, run_at, workflow, trace
"""
# CLAIM for many jobs of one worker: ids as a JSON array (each looked up by rowid).
CLAIM_MANY = f"""
UPDATE jobs SET state = 'running', attempt = attempt + 1, leased_by = ?, lease_until = ?,
                started_at = ?
WHERE id IN (SELECT value FROM json_each(?)) AND state = 'queued'
RETURNING id, {_CLAIMED_TEXT}, attempt, max_attempts, interrupts, crashes, timeout,
          scheduled_at, leased_by, priority, run_at, workflow, trace
"""
PROMOTE_DUE = """
UPDATE jobs SET state = 'queued'
WHERE id IN (SELECT id FROM jobs WHERE state = 'scheduled' AND run_at <= ?
             ORDER BY run_at LIMIT ?)
"""
NEXT_SCHEDULED = "SELECT min(run_at) FROM jobs WHERE state = 'scheduled'"
# The successful attempt is not copied to `attempts`: the job row holds it (started_at,
# finished_at, leased_by = its worker), which saves an insert on the hottest path.
FINISH_SUCCEEDED = """
UPDATE jobs SET state = 'succeeded', result = ?, error = NULL, started_at = ?, finished_at = ?,
                leased_by = ?, lease_until = NULL
WHERE id = ? AND attempt = ? AND state = 'running'
"""
# FINISH_SUCCEEDED for many: a JSON array of [id, attempt, result, started, finished, worker]
# (the result is JSON itself, so `->` keeps it JSON text); RETURNING names the ones recorded.
FINISH_SUCCEEDED_MANY = """
UPDATE jobs SET state = 'succeeded', result = o.value -> 2, error = NULL,
                started_at = o.value ->> 3, finished_at = o.value ->> 4,
                leased_by = o.value ->> 5, lease_until = NULL
FROM json_each(?) AS o
WHERE jobs.id = o.value ->> 0 AND jobs.attempt = o.value ->> 1 AND jobs.state = 'running'
RETURNING jobs.id
"""
FINISH_RETRY = """
UPDATE jobs SET state = ?, run_at = ?, error = ?, crashes = crashes + ?, leased_by = NULL,
                lease_until = NULL
WHERE id = ? AND attempt = ? AND state = 'running'
"""
FINISH_FAILED = """
UPDATE jobs SET state = 'failed', error = ?, crashes = crashes + ?, finished_at = ?,
                leased_by = NULL, lease_until = NULL
WHERE id = ? AND attempt = ? AND state = 'running'
"""
REQUEUE_INTERRUPTED = """
UPDATE jobs SET state = 'queued', run_at = ?, interrupts = interrupts + 1, leased_by = NULL,
                lease_until = NULL
WHERE id = ? AND attempt = ? AND state = 'running'
"""
UNCLAIM = """
UPDATE jobs SET state = 'queued', attempt = attempt - 1, leased_by = NULL, lease_until = NULL,
                started_at = NULL
WHERE id = ? AND attempt = ? AND state = 'running'
"""
RECORD_ATTEMPT = """
INSERT INTO attempts (job_id, attempt, outcome, worker, started_at, finished_at, error, traceback)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (job_id, attempt) DO NOTHING
"""
# A refused outcome (its job no longer runs that attempt) becomes a ``stale`` attempt, unless
# it is that attempt's own outcome written again: the job succeeded at that attempt, or its
# row already holds this failure or this very refusal. A batch sent again after its COMMIT's
# answer was lost, and a rescue that read the job before its success committed, are that.
# Only against a live row: the job may have been purged or pruned meanwhile.
# (:job, :attempt, :worker, :started, :finished, :error: the failure reported, NULL for a
# success; :stale: the refusal's text)
RECORD_STALE = """
INSERT INTO attempts (job_id, attempt, outcome, worker, started_at, finished_at, error, traceback)
SELECT id, :attempt, 'stale', :worker, :started, :finished, :stale, NULL FROM jobs
WHERE id = :job AND NOT (attempt = :attempt AND state = 'succeeded')
  AND NOT EXISTS (SELECT 1 FROM attempts a WHERE a.job_id = :job AND a.attempt = :attempt
                  AND (a.outcome = 'failed' AND a.error = :error OR instr(a.error, :stale) > 0))
ON CONFLICT (job_id, attempt) DO UPDATE SET
    outcome = 'stale',
    error = coalesce(attempts.error || '; ', '') || excluded.error
"""
RENEW_LEASE = """
UPDATE jobs SET lease_until = ? WHERE id = ? AND attempt = ? AND state = 'running'
"""
# A rescue needs the order a worker was sent its jobs in: claim time (started_at), then
# best first (priority, run_at, id) within one claim.
EXPIRED_LEASES = """
SELECT id, task, attempt, max_attempts, interrupts, crashes, leased_by, started_at, priority,
       run_at
FROM jobs WHERE state = 'running' AND lease_until < ? ORDER BY lease_until LIMIT ?
"""
RUNNING_LEASES = """
SELECT id, task, attempt, max_attempts, interrupts, crashes, leased_by, started_at, priority,
       run_at
FROM jobs WHERE state = 'running' AND leased_by LIKE ? ESCAPE '\\'
"""
HELD_BY = "SELECT id, attempt FROM jobs WHERE state = 'running' AND leased_by LIKE ? ESCAPE '\\'"
# A workflow step is kept while a step waiting on it has not ended (its result is that
# step's input: current_job().results()), and a job that continued (litejobs.then) while its
# run has a step not ended (its job.result() follows its continuations to the end).
PRUNE = """
DELETE FROM jobs WHERE id IN (
    SELECT id FROM jobs WHERE state IN ('succeeded', 'failed', 'cancelled') AND finished_at < ?
      AND (workflow IS NULL OR (NOT EXISTS (
          SELECT 1 FROM job_deps d JOIN jobs w ON w.id = d.job_id
          WHERE d.upstream = jobs.id AND w.state NOT IN ('succeeded', 'failed', 'cancelled'))
        AND (continuation IS NULL OR NOT EXISTS (
          SELECT 1 FROM jobs r WHERE r.workflow = jobs.workflow
          AND r.state NOT IN ('succeeded', 'failed', 'cancelled')))))
    ORDER BY finished_at LIMIT ?)
"""
SELECT_CRON_ENTRY = (
    "SELECT name, schedule, since, last_instant, last_job FROM cron_entries WHERE name = ?"
)
UPSERT_CRON_ENTRY = """
INSERT INTO cron_entries (name, schedule, since) VALUES (?, ?, ?)
ON CONFLICT (name) DO UPDATE SET schedule = excluded.schedule, since = excluded.since
"""
ADVANCE_CRON_ENTRY = """
UPDATE cron_entries SET last_instant = max(coalesce(last_instant, 0), ?),
                        last_job = coalesce(?, last_job)
WHERE name = ?
"""
INSERT_CRON_FIRE = """
INSERT OR IGNORE INTO cron_fires (entry, instant, outcome, fired_at) VALUES (?, ?, ?, ?)
"""
SET_CRON_FIRE_JOB = "UPDATE cron_fires SET job_id = ? WHERE entry = ? AND instant = ?"
SELECT_JOB_STATE = "SELECT state FROM jobs WHERE id = ?"
SELECT_CRON_ENTRIES = """
SELECT e.name, e.schedule, e.since, e.last_instant, e.last_job, j.state AS last_state
FROM cron_entries e LEFT JOIN jobs j ON j.id = e.last_job
ORDER BY e.name
"""
PRUNE_CRON_FIRES = """
DELETE FROM cron_fires WHERE (entry, instant) IN (
    SELECT entry, instant FROM cron_fires WHERE fired_at < ? LIMIT ?)
"""

RUNNING_IN_QUEUE = (
    "SELECT id FROM jobs WHERE state = 'running' AND queue = ? ORDER BY started_at LIMIT ?"
)
COUNT_RUNNING_IN_QUEUE = "SELECT count(*) FROM jobs WHERE state = 'running' AND queue = ?"
RUNNING_WITH_KEY = (
    "SELECT id FROM jobs WHERE state = 'running' AND concurrency_key = ? ORDER BY started_at"
)
AHEAD_IN_QUEUE = """
SELECT count(*) FROM jobs
WHERE state = 'queued' AND queue = :queue
  AND (priority > :priority OR (priority = :priority AND (run_at < :run_at
       OR (run_at = :run_at AND id < :id))))
"""
SELECT_PAUSED = "SELECT paused FROM queues WHERE name = ?"

UPSERT_SUPERVISOR = """
INSERT INTO supervisors (id, hostname, pid, started_at, heartbeat_at, queues, pid_ns)
VALUES (?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at, pid_ns = excluded.pid_ns
"""
DELETE_SUPERVISOR = "DELETE FROM supervisors WHERE id = ?"
DELETE_OLD_SUPERVISORS = "DELETE FROM supervisors WHERE heartbeat_at < ?"
SELECT_SUPERVISORS = (
    "SELECT id, hostname, pid, started_at, heartbeat_at, queues, pid_ns FROM supervisors "
    "ORDER BY id"
)
COUNT_EXPIRED_LEASES = "SELECT count(*) FROM jobs WHERE state = 'running' AND lease_until < ?"
COUNT_RUNNING = "SELECT count(*) FROM jobs WHERE state = 'running'"
COUNT_QUEUED = "SELECT count(*) FROM jobs WHERE state = 'queued'"
OLDEST_QUEUED = "SELECT min(run_at) FROM jobs WHERE state = 'queued'"
COUNT_BY_QUEUE_STATE = "SELECT queue, state, count(*) FROM jobs GROUP BY queue, state"

# --- bulk admin operations (store/admin.py) ---------------------------------------------------

# A manual retry of failed or cancelled jobs (ids as a JSON array). expires_at is cleared: an
# operator's retry is an order to run the job (as Oban's retry_job or a retry from Sidekiq's
# dead set), and keeping the old deadline expired a retried job again at once.
RETRY_JOBS = """
UPDATE jobs SET state = 'queued', run_at = ?, max_attempts = attempt - interrupts + ?,
                crashes = 0, error = NULL, finished_at = NULL, result = NULL, expires_at = NULL
WHERE id IN (SELECT value FROM json_each(?)) AND state IN ('failed', 'cancelled')
"""
# Before CANCEL_JOBS, in its transaction: the running ones' attempts end "interrupted".
RECORD_CANCELLED_ATTEMPTS = """
INSERT INTO attempts (job_id, attempt, outcome, worker, started_at, finished_at, error, traceback)
SELECT id, attempt, 'interrupted', leased_by, started_at, ?, ?, NULL FROM jobs
WHERE id IN (SELECT value FROM json_each(?)) AND state = 'running'
ON CONFLICT (job_id, attempt) DO NOTHING
"""
CANCEL_JOBS = f"""
UPDATE jobs SET state = 'cancelled', error = ?, finished_at = ?, leased_by = NULL,
                lease_until = NULL
WHERE id IN (SELECT value FROM json_each(?))
  AND state IN ({", ".join(f"'{s.value}'" for s in sources(State.CANCELLED))})
"""
