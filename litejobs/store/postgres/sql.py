"""The PostgreSQL store's statements (cron's and upkeep's are beside their code, in ``cron``
and ``upkeep``; the schema's in ``schema``), each a named constant meaning what the SQLite
store's statement of the same name means (``litejobs.store.sql``).

Times: ``NOW`` is the database server's clock. A time the caller passes enters as its
distance from the caller's ``now`` (``NOW + %s``), so every stored time and every comparison
is on the server's clock, whatever the caller's (see the package docstring).
"""

from __future__ import annotations

from litejobs.job import State, sources
from litejobs.store.sql import JOB_COLUMNS

__all__ = ["JOB_COLUMNS", "NOW"]

#: The server's clock, in epoch seconds; one value for a whole statement.
NOW = "(extract(epoch FROM statement_timestamp())::float8)"

#: Advisory lock classes (the first int of pg_advisory_xact_lock(int, int)): the second is a
#: hash, and a collision only makes two transactions wait for each other, never wrong.
LOCK_SCHEMA = 0x4C4A0001
LOCK_KEY = 0x4C4A0002
LOCK_CKEY_CLASS = 0x4C4A0003

SCHEMA_LOCK = f"SELECT pg_advisory_xact_lock({LOCK_SCHEMA}, hashtext(current_schema()))"
# The store's identity: its version row, and whether the schema already holds a foreign
# `jobs` table (then litejobs refuses to touch it).
META = "CREATE TABLE IF NOT EXISTS litejobs_meta (key text PRIMARY KEY, value text NOT NULL)"
SELECT_VERSION = "SELECT value FROM litejobs_meta WHERE key = 'schema_version'"
FOREIGN_JOBS = "SELECT to_regclass('jobs') IS NOT NULL AS present"
SET_VERSION = """
INSERT INTO litejobs_meta (key, value) VALUES ('schema_version', %s)
ON CONFLICT (key) DO UPDATE SET value = excluded.value
"""

_INSERT_COLUMNS = """task, queue, state, priority, args, kwargs, key, run_at, scheduled_at,
                  created_at, max_attempts, timeout, expires_at, concurrency_key,
                  concurrency_limit, tags, trace, flow_rate, flow_period"""
_RETURNED = "RETURNING id, run_at, created_at, expires_at"
# One job: (task, queue, state, priority, args, kwargs, key, run_in, max_attempts, timeout,
# expires_in, concurrency_key, concurrency_limit, tags, trace, flow_rate, flow_period).
INSERT_JOB = f"""
INSERT INTO jobs ({_INSERT_COLUMNS})
SELECT %s, %s, %s, %s, %s, %s, %s, t.now + %s, t.now + %s, t.now, %s, %s, t.now + %s,
       %s, %s, %s, %s, %s, %s
FROM (SELECT {NOW} AS now) t
{_RETURNED}
"""
# INSERT_JOB and the bell's ring in one statement (its parameters, then the ring's byte): an
# enqueue in autocommit is then one round trip, and the ring is delivered at its commit.
# pg_notify is volatile, so the one-row subquery is always run.
INSERT_JOB_RING = f"""
WITH j AS ({INSERT_JOB})
SELECT j.* FROM j, (SELECT pg_notify('litejobs.' || current_schema(), %s)) AS rung
"""
# Many keyless, untagged jobs as parallel arrays; rows go in (and take ids) in array order.
INSERT_JOBS = f"""
INSERT INTO jobs ({_INSERT_COLUMNS})
SELECT u.task, u.queue, u.state, u.priority, u.args, u.kwargs, NULL, t.now + u.run_in,
       t.now + u.run_in, t.now, u.max_attempts, u.timeout, t.now + u.expires_in, NULL, NULL,
       NULL, NULL, NULL, NULL
FROM (SELECT {NOW} AS now) t,
     unnest(%s::text[], %s::text[], %s::text[], %s::int[], %s::text[], %s::text[],
            %s::float8[], %s::bigint[], %s::float8[], %s::float8[])
     WITH ORDINALITY AS u (task, queue, state, priority, args, kwargs, run_in, max_attempts,
                          timeout, expires_in, n)
ORDER BY u.n
{_RETURNED}
"""
# A NewJobs: one row per element of a JSON array of argument lists (json, not jsonb: each
# element's text is kept as written). (task, queue, state, priority, run_in, run_in,
# max_attempts, timeout, expires_in, concurrency_key, concurrency_limit, flow_rate,
# flow_period, payload)
_BATCH = """
INSERT INTO jobs ({columns})
SELECT %s, %s, %s, %s, {args}, {kwargs}, NULL, t.now + %s, t.now + %s, t.now, %s, %s,
       t.now + %s, %s, %s, NULL, NULL, %s, %s
FROM (SELECT {now} AS now) t, json_array_elements(%s::json) WITH ORDINALITY AS e (value, n)
ORDER BY e.n
{returned}
"""
INSERT_JOBS_JSON = _BATCH.format(columns=_INSERT_COLUMNS, now=NOW, returned=_RETURNED,
                                 args="e.value::text", kwargs="'{}'")
INSERT_JOBS_JSON_KW = _BATCH.format(columns=_INSERT_COLUMNS, now=NOW, returned=_RETURNED,
                                    args="(e.value -> 0)::text", kwargs="(e.value -> 1)::text")
INSERT_JOB_TAGS = """
INSERT INTO job_tags (job_id, tag) SELECT %s, value FROM json_array_elements_text(%s::json)
ON CONFLICT DO NOTHING
"""
INSERT_QUEUES = """
INSERT INTO queues (name) SELECT DISTINCT unnest(%s::text[]) ORDER BY 1 ON CONFLICT DO NOTHING
"""
# A keyed insert holds this lock (task and key) from its twin's lookup to its commit: two
# producers of one key, on any host, are serialised, and the second sees the first's job.
LOCK_JOB_KEY = f"SELECT pg_advisory_xact_lock({LOCK_KEY}, hashtext(%s || chr(31) || %s))"
FIND_KEY = f"""
SELECT {JOB_COLUMNS} FROM jobs
WHERE task = %s AND key = %s AND created_at >= {NOW} - %s
  AND state NOT IN ('failed', 'cancelled')
ORDER BY id DESC LIMIT 1
"""
DEBOUNCE = f"""
UPDATE jobs SET state = 'scheduled', run_at = {NOW} + %s, scheduled_at = {NOW} + %s,
                args = %s, kwargs = %s, expires_at = {NOW} + %s
WHERE id = %s AND state IN ('scheduled', 'queued')
RETURNING run_at, scheduled_at, expires_at
"""

SELECT_JOB = f"SELECT {JOB_COLUMNS} FROM jobs WHERE id = %s"
SELECT_ATTEMPTS = (
    "SELECT attempt, outcome, worker, started_at, finished_at, error, traceback "
    "FROM attempts WHERE job_id = %s ORDER BY attempt"
)
SELECT_QUEUES = "SELECT name, paused FROM queues ORDER BY name"
COUNT_BY_QUEUE_STATE = "SELECT queue, state, count(*) AS n FROM jobs GROUP BY queue, state"

# --- claims --------------------------------------------------------------------------------------

# The claim that follows this read in a supervisor's transaction runs with generic plans
# (set_config(..., true): this transaction only; from PostgreSQL 12). Under the default
# plan_cache_mode the server re-plans the prepared CLAIM at every execution, about half its
# time (0.67 -> 0.35 ms a claim, bench/results-postgres.md); its plan does not depend on the
# parameters' values. Reads elsewhere (state = %s, skewed) keep their custom plans.
GENERIC_PLANS = """CASE WHEN current_setting('server_version_num')::int >= 120000
    THEN set_config('plan_cache_mode', 'force_generic_plan', true) END"""
# `seen`: the distinct queues of queued jobs (one index seek each; NULL last). Also the head
# of quickclaim.CLAIM_ALONE.
QUEUED_NAMES = """WITH RECURSIVE seen (name) AS (
    SELECT min(queue) FROM jobs WHERE state = 'queued'
    UNION ALL
    SELECT (SELECT min(queue) FROM jobs WHERE state = 'queued' AND queue > seen.name)
    FROM seen WHERE seen.name IS NOT NULL
)"""
# The distinct queues of queued jobs, and the paused queues.
QUEUES_TO_VISIT = f"""
{QUEUED_NAMES}
SELECT name, false AS paused,
       EXISTS (SELECT 1 FROM jobs WHERE state = 'queued' AND concurrency_key IS NOT NULL
                                    AND queue = seen.name) AS keyed
FROM seen, (SELECT {GENERIC_PLANS}) AS plans WHERE name IS NOT NULL
UNION ALL
SELECT name, true, false FROM queues WHERE paused
"""
ADOPT_QUEUES = """
INSERT INTO queues (name) SELECT DISTINCT queue FROM jobs WHERE state = 'queued'
ON CONFLICT DO NOTHING
"""
# The rows of the queues with a concurrency limit, locked in name order (no deadlock between
# two claimers): the running count read after this is exact until this transaction ends.
LOCK_QUEUES = "SELECT name FROM queues WHERE name = ANY(%s) ORDER BY name FOR UPDATE"
RUNNING_BY_QUEUE = """
SELECT queue, count(*) AS n FROM jobs WHERE state = 'running' AND queue = ANY(%s) GROUP BY queue
"""
# A rate-limited queue's window (its row locked, as for a concurrency limit): starts that left
# it are forgotten, starts "in the future" (the server's clock stepped back since) count as
# starting now, then (period) -> how many starts it holds, its oldest of known time (NULL when
# none is known), and the server's now. A start not yet known (job_id set, at = +infinity:
# a job sent ahead, see ratestarts) is counted and waits for its time.
RATE_FORGET = f"DELETE FROM rate_starts WHERE queue = %s AND at <= {NOW} - %s"
RATE_CLAMP = f"""
UPDATE rate_starts SET at = {NOW} WHERE queue = %s AND at > {NOW} AND job_id IS NULL
"""
RATE_WINDOW = f"""
SELECT count(*) AS used, min(at) FILTER (WHERE job_id IS NULL) AS oldest, {NOW} AS now
FROM rate_starts WHERE queue = %s AND at > {NOW} - %s
"""
# (queues, job ids): one start each, now; a job id (not NULL) marks a start not yet known.
RATE_START = f"""
INSERT INTO rate_starts (queue, at, job_id)
SELECT u.queue, CASE WHEN u.job IS NULL THEN {NOW} ELSE 'infinity'::float8 END, u.job
FROM unnest(%s::text[], %s::bigint[]) AS u (queue, job)
"""
# Queued jobs with a concurrency key that a claim may take, best first, locked (SKIP LOCKED):
# (queues, ahead, keys to pass over, limit). The claim picks among them in Python, each key
# under its advisory lock (LOCK_CKEYS), and hands its picks to CLAIM.
KEYED_CANDIDATES = f"""
SELECT id, queue, concurrency_key AS ckey, coalesce(concurrency_limit, 1) AS climit,
       flow_rate AS frate, flow_period AS fperiod
FROM jobs
WHERE state = 'queued' AND queue = ANY(%s) AND NOT parked AND concurrency_key IS NOT NULL
  AND (expires_at IS NULL OR (NOT %s AND expires_at >= {NOW}))
  AND NOT (concurrency_key = ANY(%s))
ORDER BY priority DESC, run_at, id
LIMIT %s
FOR UPDATE SKIP LOCKED
"""
# A concurrency key's lock, not waited for: a key another claimer holds is passed over by
# this claim (as SKIP LOCKED passes over its rows); held, the key's running count is exact.
LOCK_CKEY = f"SELECT pg_try_advisory_xact_lock({LOCK_CKEY_CLASS}, hashtext(%s)) AS held"
# (keys) -> the keys held: LOCK_CKEY of each, tried once, in one round trip.
LOCK_CKEYS = f"""
SELECT k.key FROM unnest(%s::text[]) AS k (key)
WHERE pg_try_advisory_xact_lock({LOCK_CKEY_CLASS}, hashtext(k.key))
"""
RUNNING_WITH_KEYS = """
SELECT concurrency_key AS ckey, count(*) AS n FROM jobs
WHERE state = 'running' AND concurrency_key = ANY(%s) GROUP BY concurrency_key
"""
# The columns a claim returns (of `jobs`, as its UPDATE names them), here and in CLAIM_ALONE.
CLAIMED = """jobs.id, task, queue, args, kwargs, attempt, max_attempts, interrupts, crashes,
          timeout, scheduled_at, leased_by, priority, run_at, workflow, trace"""
# The claim: (queue names, their caps, ahead, [keyed jobs picked,] worker ids, worker ids,
# lease seconds). Each queue's best `cap` claimable jobs without a key, locked (SKIP LOCKED: rows
# another claimer holds are passed over, not waited for), and the keyed jobs the claim picked
# (locked already); at most `cap` of each queue, then the best of all, one per worker in
# order, taken in the same statement. Paused queues are left out here too, so a pause
# committed on another host is obeyed at once. `ahead`: the workers are places behind a
# running job, where a job that must start by its expiry does not go.
_CLAIM = f"""
WITH caps (queue, cap) AS (
    SELECT u.queue, u.cap FROM unnest(%s::text[], %s::int[]) AS u (queue, cap)
    WHERE NOT EXISTS (SELECT 1 FROM queues q WHERE q.name = u.queue AND q.paused)
), picked AS (
    SELECT j.id, j.queue, j.priority, j.run_at FROM caps CROSS JOIN LATERAL (
        SELECT id, queue, priority, run_at FROM jobs
        WHERE state = 'queued' AND queue = caps.queue AND NOT parked
          AND concurrency_key IS NULL
          AND (expires_at IS NULL OR (NOT %s AND expires_at >= {NOW}))
        ORDER BY priority DESC, run_at, id
        LIMIT caps.cap
        FOR UPDATE SKIP LOCKED) j
{{keyed}}
), ranked AS (
    SELECT p.id, p.priority, p.run_at, caps.cap,
           row_number() OVER (PARTITION BY p.queue ORDER BY p.priority DESC, p.run_at, p.id)
               AS place
    FROM picked p JOIN caps ON caps.queue = p.queue
), best AS (
    SELECT id, row_number() OVER (ORDER BY priority DESC, run_at, id) AS n FROM ranked
    WHERE place <= cap
    ORDER BY priority DESC, run_at, id LIMIT cardinality(%s::text[])
)
UPDATE jobs SET state = 'running', attempt = attempt + 1,
                leased_by = (%s::text[])[best.n], lease_until = {NOW} + %s, started_at = {NOW}
FROM best WHERE jobs.id = best.id
RETURNING {CLAIMED}
"""
CLAIM = _CLAIM.format(keyed="")
# CLAIM with the keyed jobs picked (one more parameter, after `ahead`): a statement of its
# own, so that a claim without any does not look up an empty list (the planner read every
# running job for it).
CLAIM_KEYED = _CLAIM.format(keyed="""    UNION ALL
    SELECT id, queue, priority, run_at FROM jobs WHERE id = ANY(%s::bigint[])""")
PROMOTE_DUE = f"""
UPDATE jobs SET state = 'queued'
WHERE id IN (SELECT id FROM jobs WHERE state = 'scheduled' AND run_at <= {NOW}
             ORDER BY run_at LIMIT %s FOR UPDATE SKIP LOCKED)
"""
EXPIRE_DUE = f"""
UPDATE jobs SET state = 'cancelled', finished_at = {NOW},
    error = 'expired: not started within '
            || round((expires_at - run_at)::numeric, 3)::float8::text || ' s of its run time'
WHERE id IN (SELECT id FROM jobs WHERE expires_at IS NOT NULL AND expires_at < {NOW}
             AND state IN ('scheduled', 'queued') LIMIT %s FOR UPDATE SKIP LOCKED)
"""
# (id, attempt) -> n: 1 when given back. It never started: a start counted for it (not yet
# known) is no start, and goes from the windows in the same statement.
UNCLAIM = """
WITH back AS (
    UPDATE jobs SET state = 'queued', attempt = attempt - 1, leased_by = NULL,
                    lease_until = NULL, started_at = NULL
    WHERE id = %s AND attempt = %s AND state = 'running'
    RETURNING id
), rate AS (
    DELETE FROM rate_starts WHERE job_id IN (SELECT id FROM back)
), flow AS (
    DELETE FROM flow_starts WHERE job_id IN (SELECT id FROM back)
)
SELECT count(*) AS n FROM back
"""

# --- outcomes, fenced by the attempt number ------------------------------------------------------

# (result, started ago, worker, id, attempt)
FINISH_SUCCEEDED = f"""
UPDATE jobs SET state = 'succeeded', result = %s, error = NULL, started_at = {NOW} - %s,
                finished_at = {NOW}, leased_by = %s, lease_until = NULL
WHERE id = %s AND attempt = %s AND state = 'running'
"""
# FINISH_SUCCEEDED for many, as parallel arrays; RETURNING names the ones recorded.
FINISH_SUCCEEDED_MANY = f"""
UPDATE jobs SET state = 'succeeded', result = o.result, error = NULL,
                started_at = {NOW} - o.started_ago, finished_at = {NOW} - o.finished_ago,
                leased_by = o.worker, lease_until = NULL
FROM unnest(%s::bigint[], %s::bigint[], %s::text[], %s::text[], %s::float8[], %s::float8[])
     AS o (id, attempt, result, worker, started_ago, finished_ago)
WHERE jobs.id = o.id AND jobs.attempt = o.attempt AND jobs.state = 'running'
RETURNING jobs.id
"""
# (state, run in, error, crashed, id, attempt)
FINISH_RETRY = f"""
UPDATE jobs SET state = %s, run_at = {NOW} + %s, error = %s, crashes = crashes + %s,
                leased_by = NULL, lease_until = NULL
WHERE id = %s AND attempt = %s AND state = 'running'
RETURNING {NOW} AS now
"""
FINISH_FAILED = f"""
UPDATE jobs SET state = 'failed', error = %s, crashes = crashes + %s, finished_at = {NOW},
                leased_by = NULL, lease_until = NULL
WHERE id = %s AND attempt = %s AND state = 'running'
RETURNING {NOW} AS now
"""
REQUEUE_INTERRUPTED = f"""
UPDATE jobs SET state = 'queued', run_at = {NOW}, interrupts = interrupts + 1,
                leased_by = NULL, lease_until = NULL
WHERE id = %s AND attempt = %s AND state = 'running'
RETURNING {NOW} AS now
"""
# (id, attempt, outcome, worker, started ago, finished (the server's now of the statement
# that ended the attempt, so that its times and the job's agree to the microsecond: each
# statement has a now of its own), error, traceback)
RECORD_ATTEMPT = """
INSERT INTO attempts (job_id, attempt, outcome, worker, started_at, finished_at, error,
                      traceback)
VALUES (%s, %s, %s, %s, %s::float8 - %s, %s, %s, %s)
ON CONFLICT (job_id, attempt) DO NOTHING
"""
# A refused outcome (its job no longer runs that attempt) becomes a ``stale`` attempt, unless
# it is that attempt's own outcome written again: the job succeeded at that attempt, or its
# row already holds this failure or this very refusal. A batch sent again after its COMMIT's
# answer was lost, and a rescue that lost its race to the success, are that. Only against a
# live row: the job may have been purged or pruned meanwhile. (job, attempt, worker, started
# ago, error: the failure reported, NULL for a success; stale: the refusal's text)
RECORD_STALE = f"""
INSERT INTO attempts (job_id, attempt, outcome, worker, started_at, finished_at, error,
                      traceback)
SELECT id, %(attempt)s, 'stale', %(worker)s, {NOW} - %(ago)s, {NOW}, %(stale)s, NULL
FROM jobs
WHERE id = %(job)s AND NOT (attempt = %(attempt)s AND state = 'succeeded')
  AND NOT EXISTS (SELECT 1 FROM attempts a WHERE a.job_id = %(job)s AND a.attempt = %(attempt)s
                  AND (a.outcome = 'failed' AND a.error = %(error)s
                       OR strpos(a.error, %(stale)s) > 0))
ON CONFLICT (job_id, attempt) DO UPDATE SET
    outcome = 'stale',
    error = coalesce(attempts.error || '; ', '') || excluded.error
"""

# --- leases --------------------------------------------------------------------------------------

# (seconds, ids, attempts): the pairs still leased, renewed.
RENEW_LEASES = f"""
UPDATE jobs SET lease_until = {NOW} + %s
FROM unnest(%s::bigint[], %s::bigint[]) AS l (id, attempt)
WHERE jobs.id = l.id AND jobs.attempt = l.attempt AND jobs.state = 'running'
RETURNING jobs.id, jobs.attempt
"""
_LEASE_COLUMNS = ("id, task, attempt, max_attempts, interrupts, crashes, leased_by, "
                  "started_at, priority, run_at")
# Locked until the rescue commits (SQLite's rescue holds the file's write lock from its read
# on): a late renewal or outcome of a job taken waits for it, then finds it no longer running
# and learns it lost the lease; one a writer holds now is passed over until the next pass.
EXPIRED_LEASES = f"""
SELECT {_LEASE_COLUMNS} FROM jobs
WHERE state = 'running' AND lease_until < {NOW} ORDER BY lease_until LIMIT %s
FOR UPDATE SKIP LOCKED
"""
RUNNING_LEASES = f"""
SELECT {_LEASE_COLUMNS} FROM jobs WHERE state = 'running' AND leased_by LIKE %s ESCAPE '\\'
"""

# --- an operator's changes -----------------------------------------------------------------------

_CANCELLABLE = ", ".join(f"'{s.value}'" for s in sources(State.CANCELLED))
# Before CANCEL_JOBS, in its transaction: the running ones' attempts end "interrupted".
RECORD_CANCELLED_ATTEMPTS = f"""
INSERT INTO attempts (job_id, attempt, outcome, worker, started_at, finished_at, error,
                      traceback)
SELECT id, attempt, 'interrupted', leased_by, started_at, {NOW}, %s, NULL FROM jobs
WHERE id = ANY(%s) AND state = 'running'
ON CONFLICT (job_id, attempt) DO NOTHING
"""
CANCEL_JOBS = f"""
UPDATE jobs SET state = 'cancelled', error = %s, finished_at = {NOW}, leased_by = NULL,
                lease_until = NULL
WHERE id = ANY(%s) AND state IN ({_CANCELLABLE})
"""
# A manual retry: an order to run the job now (its expiry cleared, as the SQLite store's).
RETRY_JOBS = f"""
UPDATE jobs SET state = 'queued', run_at = {NOW}, max_attempts = attempt - interrupts + %s,
                crashes = 0, error = NULL, finished_at = NULL, result = NULL, expires_at = NULL
WHERE id = ANY(%s) AND state IN ('failed', 'cancelled')
"""
PURGE = "DELETE FROM jobs WHERE id = ANY(%s) AND state IN ('succeeded', 'failed', 'cancelled')"
SET_PAUSED = """
INSERT INTO queues (name, paused) VALUES (%s, %s)
ON CONFLICT (name) DO UPDATE SET paused = excluded.paused
"""

# --- progress ---------------------------------------------------------------------------------

# Running jobs' newest progress as parallel arrays (id, attempt, fraction, message, metadata
# patch as JSON text): fenced like outcomes, to the running attempt. Metadata is merged as a
# JSON merge patch (RFC 7396, SQLite's json_patch), by the schema's litejobs_merge_patch.
SET_PROGRESS_MANY = """
UPDATE jobs SET
    progress = coalesce(u.fraction, jobs.progress),
    progress_message = CASE WHEN u.fraction IS NULL THEN jobs.progress_message
                            ELSE u.message END,
    metadata = CASE WHEN u.metadata IS NULL THEN jobs.metadata
                    ELSE litejobs_merge_patch(coalesce(jobs.metadata, '{}')::jsonb,
                                              u.metadata::jsonb)::text END
FROM unnest(%s::bigint[], %s::bigint[], %s::float8[], %s::text[], %s::text[])
     AS u (id, attempt, fraction, message, metadata)
WHERE jobs.id = u.id AND jobs.attempt = u.attempt AND jobs.state = 'running'
"""
