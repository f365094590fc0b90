"""``litejobs health`` and ``/healthz``: is this file being served?

Healthy when the file is usable (it exists, opens, has the current schema, is writable and its
disk is not full), a supervisor's heartbeat is younger than ``max_age`` seconds, and no running
job's lease ended more than a lease ago without a rescue (a supervisor rescues an expired
lease within seconds, so one left that long means no supervisor is doing its work). Nothing is
written: a probe may run every few seconds on a file many processes use. Each problem is one
sentence saying what is wrong and what to do.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from litejobs.errors import StorageError

if TYPE_CHECKING:
    from litejobs.app import App

__all__ = ["FREE_FAIL", "Health", "check"]

#: Less free disk than this beside the file and it counts as full (as ``litejobs doctor``).
FREE_FAIL = 64 * 1024 * 1024


@dataclass(slots=True)
class Health:
    """The verdict: ``ok`` when ``problems`` is empty; ``supervisors`` alive (heartbeat
    within max_age)."""

    ok: bool
    problems: list[str] = field(default_factory=list)
    supervisors: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "problems": list(self.problems), "supervisors": self.supervisors}


def check(app: App, max_age: float = 10.0, *, lease: float | None = None,
          now: float | None = None) -> Health:
    """Judge ``app``'s file. ``lease``: the supervisors' lease (default: the app's config)."""
    from litejobs.store import SCHEMA_VERSION, Store
    from litejobs.store.schema import APPLICATION_ID

    now = time.time() if now is None else now
    lease = app.config.lease if lease is None else lease
    path = app.path
    local = app.store.local_file
    if not local:
        from litejobs.store.postgres import SCHEMA_VERSION  # the server's schema's own
    problems = _file_problems(path) if local else []
    if problems:
        return Health(False, problems)
    try:
        facts = (Store(path) if local else app.store).health_facts(now, max_age, lease)
        now += app.store.clock_offset()  # the heartbeats read back are the store's times
    except StorageError as exc:
        return Health(False, [str(exc)])
    if facts["application_id"] != APPLICATION_ID:
        return Health(False, [f"{path} is not a litejobs database; point --database (or "
                              "LITEJOBS_DATABASE) at the file your app uses"])
    version = facts["schema_version"]
    if version != SCHEMA_VERSION:
        newer = version > SCHEMA_VERSION
        return Health(False, [
            f"{path} has schema version {version}, this litejobs uses {SCHEMA_VERSION}; "
            + ("upgrade litejobs (pip install -U litejobs)" if newer else
               "start `litejobs run` of this version, which upgrades it")])
    live = int(facts["supervisors"])
    if not live:
        newest = facts["newest_heartbeat"]
        seen = ("no supervisor has ever run on it" if newest is None else
                f"the newest heartbeat is {now - newest:.0f} s old")
        problems.append(f"no supervisor heartbeat in the last {max_age:g} s ({seen}); start "
                        f"`litejobs run` on {path}, or check why it stopped")
    expired = int(facts["expired_leases"])
    if expired:
        problems.append(f"{expired} running job(s) have leases that ended over {lease:g} s ago "
                        "and were not rescued: no supervisor is maintaining the file; "
                        "start `litejobs run` (it rescues them) or check its log")
    return Health(not problems, problems, live)


def _file_problems(path: str) -> list[str]:
    """What keeps the file from being used, judged without opening it."""
    directory = os.path.dirname(path)
    if not os.path.isdir(directory):
        return [f"the directory of {path} does not exist; point --database (or "
                "LITEJOBS_DATABASE) at the file your app uses"]
    if not os.path.exists(path):
        return [f"no database at {path}; point --database (or LITEJOBS_DATABASE) at the file "
                "your app uses, or start `litejobs run`, which creates it"]
    if not (os.access(path, os.R_OK | os.W_OK) and os.access(directory, os.W_OK | os.X_OK)):
        return [f"{path} or its directory is not writable by this user; fix the permissions "
                "(SQLite writes the file and its -wal and -shm beside it)"]
    try:
        st = os.statvfs(path)
        free = shutil.disk_usage(directory).free
    except OSError as exc:
        return [f"cannot examine {path}: {exc.strerror}"]
    if st.f_flag & os.ST_RDONLY:
        return [f"{path} is on a read-only file system; remount it read-write"]
    if free < FREE_FAIL:
        return [f"the disk holding {path} is full ({free >> 20} MB free); free some space"]
    return []
