"""Migrations: how a file of an older schema version becomes the current one, in place.

Each runs inside the upgrading transaction; none rebuilds the jobs table, so a big file
upgrades at once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from litejobs.store.schema import (
    _JOB_IDS,
    _JOB_TAGS,
    _JOBS_INDEXES_AND_TRIGGERS,
    _LEGAL_MOVES,
    _PARKED_COLUMN,
    _QUEUES_PAUSED,
    _STATES,
    _TOP_STORED_ID,
    _UNCHANGED_INDEXES,
    _V3_COLUMNS,
    _V4_COLUMNS,
    _WORKFLOWS,
)
from litejobs.store.tables import (
    _FLOWS,
    _METRICS,
    _SCHEDULES,
    _V5_COLUMNS,
    _V7_COLUMNS,
    _V8_COLUMNS,
    _V8_INDEXES,
)

__all__ = ["MIGRATIONS"]

# Version 1 -> 2: parked jobs (a column, the claim index with it, the key index, the triggers
# that give parked jobs back), job ids never reused (job_ids, starting above every id stored
# anywhere, pruned cron jobs' included), the paused-queues index, supervisors' PID namespace.
# No table is rebuilt: the upgrade is quick on a big file.
_MIGRATE_1_TO_2 = f"""
ALTER TABLE jobs ADD COLUMN {_PARKED_COLUMN};
DROP INDEX jobs_queued;
DROP TRIGGER jobs_transition;
{_JOBS_INDEXES_AND_TRIGGERS.replace(_UNCHANGED_INDEXES, "")}
{_JOB_IDS.replace("VALUES (0)", _TOP_STORED_ID)}
{_QUEUES_PAUSED}
ALTER TABLE supervisors ADD COLUMN pid_ns TEXT;
"""

# Version 2 -> 3: tags, progress and metadata (columns and the job_tags table). No rebuild.
_MIGRATE_2_TO_3 = f"""
{_V3_COLUMNS}
{_JOB_TAGS}
"""

# Version 3 -> 4: workflows (the state `waiting`, three columns, two tables, the fan-in and
# cascade triggers). The state CHECK of the jobs table gains 'waiting' by the documented
# writable_schema edit (https://sqlite.org/lang_altertable.html, "otheralter"): widening a
# CHECK needs no rewrite of the rows, which a table rebuild would do for a big file.
_OLD_STATE_CHECK = ("CHECK (state IN ('scheduled', 'queued', 'running', 'succeeded', "
                    "'failed', 'cancelled'))")
_MIGRATE_3_TO_4 = f"""
{_V4_COLUMNS}
DROP TRIGGER jobs_transition;
CREATE TRIGGER jobs_transition BEFORE UPDATE OF state ON jobs
WHEN old.state != new.state AND NOT ({_LEGAL_MOVES})
BEGIN
    SELECT RAISE(ABORT, 'litejobs: illegal state transition');
END;
{_WORKFLOWS}
"""


# Version 4 -> 5: trace context, supervisors' workers, per-minute figures. No rebuild.
_MIGRATE_4_TO_5 = f"""
{_V5_COLUMNS}
{_METRICS}
"""

# Version 5 -> 6: cron entries stored at run time (the schedules table). No rebuild.

# Version 6 -> 7: flow keys' rates (two columns, the starts and waits tables). No rebuild.
_MIGRATE_6_TO_7 = f"""
{_V7_COLUMNS}
{_FLOWS}
"""

# Version 7 -> 8: starts not yet known (a column and an index on each window table). No
# rebuild; the rows already there are starts of known time.
_MIGRATE_7_TO_8 = f"""
{_V8_COLUMNS}
{_V8_INDEXES}
"""


def _widen_state_check(cur: Any) -> None:
    """Let the jobs table's state CHECK accept every state of this version."""
    new = f"CHECK (state IN ({_STATES}))"
    (sql_text,) = cur.execute(
        "SELECT sql FROM sqlite_schema WHERE type = 'table' AND name = 'jobs'").fetchone()
    if new in sql_text:
        return
    if _OLD_STATE_CHECK not in sql_text:
        raise RuntimeError("the jobs table's state CHECK is not the one litejobs wrote; "
                           "this file was changed outside litejobs, restore a backup")
    (version,) = cur.execute("PRAGMA schema_version").fetchone()
    cur.execute("PRAGMA writable_schema = ON")
    try:
        cur.execute("UPDATE sqlite_schema SET sql = ? WHERE type = 'table' AND name = 'jobs'",
                    (sql_text.replace(_OLD_STATE_CHECK, new),))
        cur.execute(f"PRAGMA schema_version = {int(version) + 1}")
    finally:
        cur.execute("PRAGMA writable_schema = OFF")


def _migrate_3_to_4(cur: Any) -> None:
    _widen_state_check(cur)
    cur.execute(_MIGRATE_3_TO_4)


#: Migrations from version N to N+1, by N: SQL, or a function of a cursor. Each runs inside
#: the upgrading transaction.
MIGRATIONS: dict[int, str | Callable[[Any], None]] = {
    1: _MIGRATE_1_TO_2, 2: _MIGRATE_2_TO_3,
    3: _migrate_3_to_4, 4: _MIGRATE_4_TO_5, 5: _SCHEDULES, 6: _MIGRATE_6_TO_7,
    7: _MIGRATE_7_TO_8,
}
