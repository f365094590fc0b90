"""Every exception litejobs raises on purpose.

The tree::

    LitejobsError
    ├── ConfigError            a config file, flag or variable is invalid
    ├── ScheduleClash          app.schedule/unschedule: the name is a litejobs.toml or
    │                          @app.cron entry (also a ValueError)
    ├── StorageError           the database file cannot be used (read-only, corrupt, foreign, newer)
    │   └── StorageFull        the disk is full; enqueue again when space returns
    ├── JobFailed              job.result(): the job ended failed (carries the error text)
    ├── JobCancelled           job.result(): the job ended cancelled (carries the reason)
    ├── JobTimeout             an attempt overran its hard timeout (recorded as the attempt's error)
    └── WorkerDied             the worker process running an attempt died (recorded likewise)

``TypeError`` (a value JSON cannot carry), ``ValueError`` (a bad option value) and ``TimeoutError``
(``job.result(timeout=…)`` ran out) are the built-in ones, raised where Python users expect them.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "JobCancelled",
    "JobFailed",
    "JobTimeout",
    "LitejobsError",
    "ScheduleClash",
    "StorageError",
    "StorageFull",
    "WorkerDied",
]


class LitejobsError(Exception):
    """Root of every litejobs exception."""


class ConfigError(LitejobsError):
    """A config file, command-line flag or environment variable is invalid."""


class ScheduleClash(LitejobsError, ValueError):
    """A cron entry stored at run time would take the name of a litejobs.toml or ``@app.cron``
    entry (those are changed where they are declared)."""


class StorageError(LitejobsError):
    """The database file cannot be used as it is; the message says why and what to do."""


class StorageFull(StorageError):
    """The disk holding the database is full; nothing was written."""


class JobFailed(LitejobsError):
    """Raised by ``Job.result()`` when the job ended ``failed``."""

    def __init__(self, job_id: int, error: str | None) -> None:
        self.job_id = job_id
        self.error = error or ""
        super().__init__(f"job {job_id} failed: {self.error}")


class JobCancelled(LitejobsError):
    """Raised by ``Job.result()`` when the job ended ``cancelled``."""

    def __init__(self, job_id: int, reason: str | None) -> None:
        self.job_id = job_id
        self.reason = reason or "cancelled"
        super().__init__(f"job {job_id} was cancelled: {self.reason}")


class JobTimeout(LitejobsError):
    """An attempt ran past its task's ``timeout`` and its process was ended."""


class WorkerDied(LitejobsError):
    """The worker process running an attempt died (a signal, ``os._exit``, out of memory)."""
