"""``litejobs doctor``: check the database file and its surroundings, each with a verdict.

Nothing here writes to the database. A check is ``ok``, ``warn`` (printed, exit 0) or ``fail``
(something is broken: exit 1), and every non-ok check says what to do.
"""

from __future__ import annotations

import os
import shutil
import stat
import time
from dataclasses import dataclass
from typing import Any

from litejobs.bell import bell_dir, dir_chain, dir_problem
from litejobs.errors import StorageError
from litejobs.store import SCHEMA_VERSION, Store, is_url
from litejobs.store.failures import stale_wal_at

__all__ = ["NETWORK_FS", "Check", "diagnose", "filesystem_of", "is_network_fs"]

#: File systems on which SQLite's locking is unreliable: a database there can be corrupted
#: by two machines, or one machine's processes, believing they hold the lock.
NETWORK_FS = frozenset({"nfs", "nfs4", "cifs", "smb", "smb3", "smbfs", "ncpfs", "afs", "9p",
                        "ceph", "glusterfs", "lustre", "gpfs", "davfs", "fuse.sshfs",
                        "fuse.glusterfs", "fuse.s3fs", "fuse.gcsfuse", "fuse.rclone",
                        "fuse.cephfs", "beegfs", "orangefs", "ocfs2", "gfs2"})
WAL_WARN = 64 * 1024 * 1024
FREE_FAIL = 64 * 1024 * 1024
FREE_WARN = 1024 * 1024 * 1024
SUPERVISOR_STALE = 30.0


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    verdict: str  # "ok" | "warn" | "fail"
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {"check": self.name, "verdict": self.verdict, "message": self.message}


def is_network_fs(fstype: str) -> bool:
    """True for a file system type (as /proc/mounts names it) where SQLite locking is unsafe."""
    return fstype in NETWORK_FS or fstype.startswith("nfs")


def filesystem_of(path: str) -> tuple[str, str]:
    """(mount point, file system type) holding ``path``, from /proc/mounts."""
    real = os.path.realpath(path)
    best = ("/", "unknown")
    try:
        with open("/proc/mounts", encoding="utf-8", errors="replace") as f:
            for line in f:
                parts = line.split()
                if len(parts) < 3:
                    continue
                mount = parts[1].replace("\\040", " ")
                inside = real == mount or real.startswith(mount.rstrip("/") + "/")
                if inside and len(mount) >= len(best[0]):
                    best = (mount, parts[2])
    except OSError:
        pass
    return best


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


def _bells(path: str) -> Check:
    """The directory of the wake-up sockets and the turns file: litejobs refuses one another
    local user could have made or can write (a planted link would lead its writes anywhere)."""
    bells = bell_dir(path)
    problem = bad = None
    try:
        for d in dir_chain(bells):
            problem, bad = dir_problem(d), d
            if problem is not None:
                break
        if problem is None:
            st = os.lstat(os.path.join(bells, "turns"))
            if (not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid()
                    or st.st_nlink != 1):
                problem = (f"{bells}/turns is not a regular file of this user with one name "
                           f"(mode {st.st_mode:o}, uid {st.st_uid}, {st.st_nlink} links)")
    except FileNotFoundError:
        pass  # not made yet: the first supervisor or contended write makes it, private
    except OSError as exc:
        problem = f"{exc.filename} cannot be examined ({exc.strerror})"
    if problem is None:
        return Check("bells", "ok", f"{bells} (wake-up sockets, turns) is private or not "
                     "made yet")
    return Check("bells", "fail", f"{problem}; another local user could plant links or "
                 "sockets there, so litejobs does not use it (supervisors find jobs by "
                 "polling, writers go without turns). Remove it as its owner or root "
                 f"(rm -r {bad or bells}) and restart `litejobs run`")


def _server_checks(url: str) -> list[Check]:
    """A PostgreSQL database: reachable, its schema this version's, the clocks' offset. The
    file checks (file system, permissions, WAL, bell sockets) have no meaning there."""
    from litejobs.store import open_store, shown

    store = open_store(url)
    try:
        store.pool()
        offset = store.clock_offset()
    except (StorageError, ImportError) as exc:
        return [Check("database", "fail", str(exc))]
    finally:
        store.close()
    checks = [Check("database", "ok", f"PostgreSQL at {shown(url)}: reachable, schema "
                    "this version's")]
    verdict = "ok" if abs(offset) < 1.0 else "warn"
    checks.append(Check("clock", verdict, f"this host's clock is {-offset:+.3f} s from the "
                        "server's (every time litejobs compares is the server's)"))
    return checks


def diagnose(path: str, allow_network_fs: bool = False, now: float | None = None
             ) -> list[Check]:
    """Every check for the database at ``path``, in a stable order."""
    now = time.time() if now is None else now
    if is_url(path):
        return _server_checks(path)
    path = os.path.abspath(path)
    directory = os.path.dirname(path)
    checks: list[Check] = []
    add = checks.append

    mount, fstype = filesystem_of(directory if os.path.isdir(directory) else "/")
    if is_network_fs(fstype):
        add(Check("filesystem", "warn" if allow_network_fs else "fail",
                  f"{directory} is on {fstype} ({mount}), a network file system where SQLite "
                  "locking is unsafe; move the database to a local disk (or pass "
                  "--allow-network-fs if you are sure only one machine uses it)"))
    else:
        add(Check("filesystem", "ok", f"{fstype} at {mount}"))

    if not os.path.isdir(directory):
        add(Check("directory", "fail", f"{directory} does not exist; create it"))
        return checks
    if not os.access(directory, os.W_OK | os.X_OK):
        add(Check("directory", "fail", f"{directory} is not writable by this user; SQLite "
                  "needs to create the -wal and -shm files there. Fix its permissions"))
    else:
        add(Check("directory", "ok", f"{directory} is writable"))
    add(_bells(path))

    stale = stale_wal_at(path)
    if stale is not None:
        # Before anything opens the file: opening it is what would replay that WAL.
        add(Check("stale_wal", "fail", stale))
        return checks
    if not os.path.exists(path):
        add(Check("database", "warn", f"{path} does not exist yet; it is created on the first "
                  "enqueue or `litejobs run`"))
        return checks
    mode = stat.S_IMODE(os.stat(path).st_mode)
    if not os.access(path, os.R_OK | os.W_OK):
        add(Check("permissions", "fail", f"{path} is not readable and writable by this user "
                  f"(mode {mode:o}); fix with chmod/chown"))
    elif mode & 0o077:
        add(Check("permissions", "warn", f"{path} has mode {mode:o}: other users can read "
                  "job arguments; chmod 600 it"))
    else:
        add(Check("permissions", "ok", f"mode {mode:o}"))

    store = Store(path)
    try:
        store.verify()
    except StorageError as exc:
        add(Check("integrity", "fail", str(exc)))
        return checks
    add(Check("integrity", "ok", "quick_check passed; a litejobs database"))

    try:
        facts = store.inspect(now)
    except StorageError as exc:
        add(Check("inspect", "fail", str(exc)))
        return checks
    version = facts["schema_version"]
    if version == SCHEMA_VERSION:
        add(Check("schema", "ok", f"schema version {version}"))
    else:
        add(Check("schema", "warn", f"schema version {version}; this litejobs uses "
                  f"{SCHEMA_VERSION} and upgrades it on the next write"))
    if facts["journal_mode"].lower() == "wal":
        add(Check("wal", "ok", "journal mode WAL"))
    else:
        add(Check("wal", "warn", f"journal mode {facts['journal_mode']}; litejobs switches it "
                  "to WAL on the next write"))
    wal = store.wal_size()
    if wal > WAL_WARN:
        add(Check("wal_size", "warn", f"the WAL is {_size(wal)}: a long-lived reader may be "
                  "blocking checkpoints (look for a process holding a read transaction); a "
                  "running supervisor truncates it once readers let go"))
    else:
        add(Check("wal_size", "ok", f"WAL {_size(wal)}"))

    free = shutil.disk_usage(directory).free
    if free < FREE_FAIL:
        add(Check("disk", "fail", f"only {_size(free)} free on {mount}; enqueues will fail "
                  "with StorageFull. Free some space"))
    elif free < FREE_WARN:
        add(Check("disk", "warn", f"{_size(free)} free on {mount}; consider freeing space or "
                  "a shorter retention"))
    else:
        add(Check("disk", "ok", f"{_size(free)} free"))

    alive = [s for s in facts["supervisors"] if now - s["heartbeat_at"] < SUPERVISOR_STALE]
    if alive:
        names = ", ".join(f"{s['id']} (heartbeat {now - s['heartbeat_at']:.0f} s ago)"
                          for s in alive)
        add(Check("supervisors", "ok", f"{len(alive)} running: {names}"))
    elif facts["queued"]:
        add(Check("supervisors", "warn", f"no supervisor has a recent heartbeat and "
                  f"{facts['queued']} job(s) are queued; start `litejobs run`"))
    else:
        add(Check("supervisors", "warn", "no supervisor has a recent heartbeat; start "
                  "`litejobs run` to run jobs"))

    expired = facts["expired_leases"]
    if expired:
        add(Check("leases", "warn", f"{expired} running job(s) have expired leases: their "
                  "supervisor died. A running supervisor rescues them within seconds; start "
                  "one if none runs"))
    else:
        add(Check("leases", "ok", f"{facts['running']} running, no expired lease"))
    oldest = facts["oldest_queued"]
    if oldest is not None and now - oldest > 300 and alive:
        add(Check("backlog", "warn", f"the oldest queued job has waited {now - oldest:.0f} s; "
                  "`litejobs explain ID` tells why (paused queue, limits, too few workers)"))
    return checks
