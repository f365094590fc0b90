"""The store's operations by caller, as typed protocols: the seam a second store (PostgreSQL)
implements without touching the rest of litejobs.

Who calls what:

- ``Producer``: ``App.enqueue``/``enqueue_many`` in any process (web workers included).
- ``Reads`` and ``ExplainFacts``: ``Job``, the CLI (``jobs``, ``show``, ``stats``,
  ``explain``), the dashboard; they never write.
- ``Admin``: an operator's ``cancel``, ``retry``, ``purge``, ``queues pause``.
- ``Maintenance``: the supervisor's checkpointer and file watch, ``litejobs doctor``.
- ``Workflows``: ``app.workflow().enqueue()``, tokens, ``WorkflowRun``, ``litejobs workflows``.
- ``Supervising``: the supervisor's own reads and its write transactions, whose statements are
  the ``WriteTx`` protocols, split by the service that runs them (claims, outcomes, leases,
  cron, upkeep, workflows).

``Store`` (the SQLite store) satisfies every one; ``Tx`` every ``...Tx``. Both are checked by
mypy (see the end of ``litejobs.store``) and by tests/test_store_ops.py.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, runtime_checkable

from litejobs.job import Attempt
from litejobs.newjob import NewJob, NewJobs
from litejobs.store.rows import QueueLimits, Row

if TYPE_CHECKING:
    from litejobs.store.flows import StepRow
    from litejobs.store.views import JobFilter, JobPage

__all__ = ["Admin", "Bells", "ClaimTx", "CronTx", "ExplainFacts", "LeaseTx", "Listener",
           "Maintenance", "OutcomeTx", "Producer", "ProducerTx", "Reads", "Ringer",
           "Supervising", "UpkeepTx", "WorkflowTx", "Workflows", "WriteTx"]

T = TypeVar("T")


# --- the store --------------------------------------------------------------------------------


@runtime_checkable
class Producer(Protocol):
    """Enqueueing: each call is one short write transaction."""

    def insert_jobs(self, jobs: Sequence[NewJob | NewJobs], now: float,
                    ) -> list[Mapping[str, Any]]:
        """Insert all of ``jobs`` or none; each one's row (or its live twin's, for a key).
        A row this call made is a ``NewRow`` and a twin's is not: the HTTP API answers 201 or
        200 by it (litejobs/web/apibatch.py), on either store."""
        ...

    def insert_job(self, job: NewJob, now: float) -> Mapping[str, Any]:
        """``insert_jobs`` for one job."""
        ...


@runtime_checkable
class Reads(Protocol):
    """Reading jobs and their surroundings; never writes."""

    def get_job(self, job_id: int) -> Row | None: ...

    def list_jobs(self, state: str | None = None, task: str | None = None,
                  queue: str | None = None, limit: int = 100,
                  tag: str | None = None, workflow: int | None = None) -> list[Row]: ...

    def attempts(self, job_id: int) -> list[Attempt]: ...

    def stats(self) -> dict[str, Any]: ...

    def queue_list(self) -> list[tuple[str, bool]]: ...

    def supervisors(self) -> list[Row]: ...

    def cron_entries(self) -> list[Row]: ...

    # the cron entries stored at run time (store/schedules.py)

    def schedules(self) -> list[Row]: ...

    def get_schedule(self, name: str) -> Row | None: ...

    def schedules_mark(self) -> tuple[int, float | None, float]: ...

    def count_matching(self, states: Sequence[str], task: str | None = None,
                       queue: str | None = None, since: float | None = None) -> int: ...

    def ids_matching(self, states: Sequence[str], task: str | None = None,
                     queue: str | None = None, since: float | None = None,
                     after_id: int = 0, limit: int = 1000) -> list[int]: ...

    # the operator's figures (store/metric_reads.py)

    def outcome_minutes(self, since: float) -> list[tuple[int, str, float]]: ...

    def metric_totals(self) -> list[tuple[str, str, str, float]]: ...

    def job_counts(self) -> dict[tuple[str, str], int]: ...

    def oldest_ready(self, now: float | None = None) -> dict[str, float]: ...

    def workers(self) -> list[Row]: ...

    # the dashboard's jobs pages (store/views.py)

    def top_job_id(self) -> int: ...

    def job_page(self, f: JobFilter, before: int | None = None, limit: int = 50,
                 scan: int = 50_000) -> JobPage: ...

    def count_jobs(self, f: JobFilter, cap: int = 10_000) -> int: ...

    def ids_for(self, f: JobFilter, after_id: int, upto: int,
                limit: int = 1000) -> list[int]: ...

    def workflow_graph(self, run_id: int, limit: int = 300,
                       ) -> tuple[list[Row], list[tuple[int, int]], int]: ...


@runtime_checkable
class ExplainFacts(Protocol):
    """What ``litejobs explain`` reads to say why a job has not run."""

    def queue_paused(self, queue: str) -> bool: ...

    def running_in_queue(self, queue: str, limit: int = 5) -> tuple[int, list[int]]: ...

    def running_with_key(self, key: str) -> list[int]: ...

    def rate_window(self, queue: str, since: float) -> tuple[int, float | None]: ...

    def flow_window(self, key: str, now: float) -> tuple[int, float | None]: ...

    def ahead_of(self, job: Row) -> int: ...


@runtime_checkable
class Admin(Protocol):
    """An operator's changes; the bulk ones take one page of ids per call."""

    def cancel(self, job_id: int, reason: str, now: float) -> bool: ...

    def cancel_many(self, ids: Sequence[int], reason: str, now: float) -> int: ...

    def retry(self, job_id: int, retries: int, now: float) -> bool: ...

    def retry_many(self, ids: Sequence[int], retries: int, now: float,
                   blocked: list[tuple[int, int | None, str]] | None = None) -> int: ...

    def purge(self, ids: Sequence[int]) -> int: ...

    def set_paused(self, queue: str, paused: bool) -> None: ...

    # ``app.schedule``/``unschedule``, ``litejobs cron add/remove`` (store/schedules.py)

    def put_schedule(self, row: Row, cron_key: str, now: float) -> tuple[Row, bool]: ...

    def delete_schedule(self, name: str) -> bool: ...


@runtime_checkable
class Workflows(Protocol):
    """Workflow runs and tokens outside the supervisor: writing a run, completing a token,
    cancelling a run, and the reads of runs and edges."""

    def write_run(self, name: str | None, steps: Sequence[StepRow], now: float,
                  ) -> tuple[int, list[int]]: ...

    def create_token(self, timeout: float | None, now: float) -> int: ...

    def complete_token(self, token: int, data: str, now: float) -> str | None: ...

    def cancel_run(self, run_id: int, reason: str, now: float) -> list[int]: ...

    def run(self, run_id: int) -> Row | None: ...

    def runs(self, limit: int = 50, state: str | None = None) -> list[Row]: ...

    def run_sinks(self, run_id: int) -> list[int]: ...

    def upstream_of(self, job_id: int) -> list[int]: ...

    def downstream_of(self, job_id: int) -> list[int]: ...


@runtime_checkable
class Maintenance(Protocol):
    """Keeping the storage healthy, and noticing when it is no longer the one at the path."""

    def checkpoint(self, truncate: bool = False) -> tuple[int, int]: ...

    def wal_size(self) -> int: ...

    def quick_check(self) -> list[str]: ...

    def inspect(self, now: float) -> Row: ...

    def verify(self) -> None: ...

    def file_changed(self) -> str | None: ...

    def health_facts(self, now: float, max_age: float, lease: float) -> Row: ...

    def backup_to(self, dest: str, progress: Callable[[int, int], None] | None = None,
                  pages: int = 1024, pause: float = 0.002) -> Row: ...


# --- the supervisor's write transaction ---------------------------------------------------------


@runtime_checkable
class ProducerTx(Protocol):
    def insert(self, job: NewJob, now: float) -> Mapping[str, Any]: ...

    def insert_many(self, jobs: Sequence[NewJob | NewJobs], now: float,
                    ) -> list[Mapping[str, Any]]: ...


@runtime_checkable
class ClaimTx(Protocol):
    """Dispatch: making jobs ready, and claiming them for workers."""

    def queues(self) -> list[tuple[str, bool]]: ...

    def claim(self, worker_ids: Sequence[str], queues: Iterable[QueueLimits], now: float,
              lease: float) -> list[Row]: ...

    def unclaim(self, job_id: int, attempt: int) -> bool: ...

    def record_starts(self, starts: Sequence[tuple[int, float, int]]) -> None:
        """Rated jobs a claim sent ahead (their row's ``unknown_start``) began: ``(job_id,
        when, unknown_start)`` each; their starts in the rate windows get that time."""

    def adopt_orphan_queues(self) -> int: ...

    def unpark_free(self) -> int: ...

    def expire_due(self, now: float, limit: int = 500) -> int: ...

    def promote_due(self, now: float, limit: int = 1000) -> int: ...


@runtime_checkable
class OutcomeTx(Protocol):
    """Recording what an attempt did, fenced by its attempt number."""

    def succeed(self, job_id: int, attempt: int, result: str, worker: str, started: float,
                now: float) -> bool: ...

    def succeed_many(self, done: Sequence[tuple[int, int, str, str, float, float]]) -> int: ...

    def fail(self, job_id: int, attempt: int, error: str, traceback: str | None,
             worker: str | None, started: float | None, now: float, retry_at: float | None,
             crashed: bool = False) -> bool: ...

    def interrupt(self, job_id: int, attempt: int, reason: str, worker: str | None,
                  started: float | None, now: float) -> bool: ...

    def set_progress_many(
            self, updates: Sequence[tuple[int, int, float | None, str | None, str | None]],
    ) -> int: ...


@runtime_checkable
class LeaseTx(Protocol):
    """Renewing leases, and finding the ones a rescue returns."""

    def renew(self, leases: Iterable[tuple[int, int]], until: float,
              ) -> list[tuple[int, int]]: ...

    def expired_leases(self, now: float, limit: int = 500) -> list[Row]: ...

    def leases_of(self, prefix: str) -> list[Row]: ...


@runtime_checkable
class CronTx(Protocol):
    """The ticker: each fire a unique (entry, instant) row written with its job."""

    def cron_entry(self, name: str) -> Row | None: ...

    def cron_reset(self, name: str, schedule: str, since: float) -> None: ...

    def cron_fire(self, entry: str, instant: float, job: NewJob | None, outcome: str,
                  now: float) -> int | None: ...

    def cron_advance(self, name: str, instant: float, job_id: int | None) -> None: ...

    def job_state(self, job_id: int) -> str | None: ...

    def prune_cron_fires(self, before: float, limit: int = 500) -> int: ...


@runtime_checkable
class UpkeepTx(Protocol):
    """Pruning, the supervisors' heartbeat rows, and the figures of /metrics (store/metrics.py)."""

    def prune(self, before: float, limit: int = 500) -> int: ...

    def heartbeat(self, supervisor: str, hostname: str, pid: int, started: float, now: float,
                  queues: str) -> None: ...

    def forget_supervisor(self, supervisor: str) -> None: ...

    def forget_supervisors_before(self, before: float) -> None: ...

    def set_workers(self, supervisor: str, workers: Sequence[Row]) -> None: ...

    def add_figures(self, rows: Sequence[tuple[int, str, str, str, float]]) -> None: ...

    def figure_expired(self, now: float) -> None: ...

    def figure_cancelled(self, ids: Sequence[int], now: float) -> None: ...

    def figure_cron(self, entry: str, first: float, last: float, now: float) -> None: ...

    def prune_metric_minutes(self, before: float, limit: int = 500) -> int: ...


@runtime_checkable
class WorkflowTx(Protocol):
    """A run's steps and edges, tokens, continuations, and the retry that revives steps (the
    fan-in and the cascade are the schema's triggers, run by every transaction)."""

    def insert_run(self, name: str | None, steps: Sequence[StepRow], now: float,
                   workflow: int | None = None) -> tuple[int, list[int]]: ...

    def create_token(self, timeout: float | None, now: float) -> int: ...

    def complete_token(self, token: int, data: str, now: float) -> str | None: ...

    def expire_tokens(self, now: float, limit: int = 500) -> int: ...

    def continue_with(self, job_id: int, attempt: int,
                      children: Sequence[tuple[NewJob, float | None]], continuation: NewJob,
                      delay: float | None, worker: str, started: float, now: float,
                      name: str) -> bool: ...

    def step_results(self, ids: Sequence[int]) -> dict[int, str]: ...

    def blocked_steps(self, ids: Sequence[int]) -> list[tuple[int, int | None, str]]: ...

    def revive(self, ids: Sequence[int]) -> int: ...

    def wait_again(self, ids: Sequence[int], retries: int) -> int: ...

    def blocker(self, job_id: int) -> tuple[int, str, str] | None: ...

    def prune_runs(self, before: float, limit: int = 500) -> int: ...


@runtime_checkable
class WriteTx(ProducerTx, ClaimTx, OutcomeTx, LeaseTx, CronTx, UpkeepTx, WorkflowTx, Protocol):
    """Everything one write transaction can do (what ``Supervising.write`` hands its ``fn``)."""


class Ringer(Protocol):
    """Rings the supervisors of a store: ``q`` claim, ``e`` look again, ``c`` a job was
    cancelled. A hint only: a ring missed costs a poll, never a job."""

    def ring(self, message: bytes = b"e") -> None: ...


class Listener(Protocol):
    """A supervisor's ear for rings: ``fileno`` to select on, ``drain`` for what came."""

    def fileno(self) -> int: ...

    def drain(self) -> bytes: ...

    def close(self) -> None: ...


@runtime_checkable
class Bells(Protocol):
    """The wake-up of a store, and what the supervisor must know of where it lives.

    Each store brings its own bell (SQLite: datagrams to sockets beside the file;
    PostgreSQL: LISTEN/NOTIFY), so the supervisor registers whatever listener its store
    gives and nothing above the store knows which one it is. ``local_file`` is True where
    the jobs live in a file of this host (WAL checkpoints, file watching and ``backup`` make
    sense there only). ``clock_offset`` is the store's clock minus this process's: times read
    back from the store minus it are this process's times (0 for a local file).
    ``inserts_ring`` is True where ``insert_job``/``insert_jobs`` wake the supervisors
    themselves (PostgreSQL: the NOTIFY rides in the insert's own statement), so the App
    rings nothing after them."""

    path: str
    local_file: bool
    inserts_ring: bool

    def bell(self) -> Ringer: ...

    def bell_listener(self, name: str) -> Listener: ...

    def clock_offset(self) -> float: ...


@runtime_checkable
class Supervising(Protocol):
    """The supervisor's own use of the store: its write transactions and a few reads."""

    path: str

    def write(self, fn: Callable[[WriteTx], T]) -> T:
        """Run ``fn`` in one short write transaction, retried whole while the store is busy."""
        ...

    def write_with_schedules(self, fn: Callable[[WriteTx, dict[str, float]], T]) -> T:
        """``write`` that also hands ``fn`` the stored cron entries' ``updated_at``."""
        ...

    def next_scheduled(self) -> float | None: ...

    def held_by(self, prefix: str) -> dict[int, int]: ...

    def close(self) -> None: ...
