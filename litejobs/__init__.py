"""litejobs: background jobs and cron for any Python app, in one SQLite file.

    import litejobs

    app = litejobs.App("jobs.db")

    @app.task
    def add(a: int, b: int) -> int:
        return a + b

    job = add.enqueue(1, 2)       # then run `litejobs run --app myapp:app` beside your app
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from litejobs.app import App
    from litejobs.errors import (
        ConfigError,
        JobCancelled,
        JobFailed,
        JobTimeout,
        LitejobsError,
        StorageError,
        StorageFull,
        WorkerDied,
    )
    from litejobs.job import Attempt, Job, State
    from litejobs.signing import verify_signature
    from litejobs.task import Backoff, Prepared, Task
    from litejobs.worker import JobContext, current_job
    from litejobs.workflows import (
        Step,
        Then,
        Token,
        Workflow,
        WorkflowRun,
        chain,
        chord,
        group,
        then,
    )

__version__ = "0.1.0"

# Each public name and the module it lives in, imported at its first use: pytest loads the
# plugin (litejobs.pytest_plugin) in every run of every project where litejobs is installed,
# and a command such as `litejobs --help` needs none of them.
_HOME = {
    "App": "litejobs.app",
    "Attempt": "litejobs.job", "Job": "litejobs.job", "State": "litejobs.job",
    "Backoff": "litejobs.task", "Prepared": "litejobs.task", "Task": "litejobs.task",
    "JobContext": "litejobs.worker", "current_job": "litejobs.worker",
    "verify_signature": "litejobs.signing",
    **dict.fromkeys(["ConfigError", "JobCancelled", "JobFailed", "JobTimeout", "LitejobsError",
                     "StorageError", "StorageFull", "WorkerDied"], "litejobs.errors"),
    **dict.fromkeys(["Step", "Then", "Token", "Workflow", "WorkflowRun", "chain", "chord",
                     "group", "then"], "litejobs.workflows"),
}


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module 'litejobs' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value  # the next lookup is a plain one
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_HOME})


__all__ = [
    "App",
    "Attempt",
    "Backoff",
    "ConfigError",
    "Job",
    "JobCancelled",
    "JobContext",
    "JobFailed",
    "JobTimeout",
    "LitejobsError",
    "Prepared",
    "State",
    "Step",
    "StorageError",
    "StorageFull",
    "Task",
    "Then",
    "Token",
    "WorkerDied",
    "Workflow",
    "WorkflowRun",
    "__version__",
    "chain",
    "chord",
    "current_job",
    "group",
    "then",
    "verify_signature",
]
