"""litejobs: background jobs and cron for any Python app, in one SQLite file.

    import litejobs

    app = litejobs.App("jobs.db")

    @app.task
    def add(a: int, b: int) -> int:
        return a + b

    job = add.enqueue(1, 2)       # then run `litejobs run --app myapp:app` beside your app
"""

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
