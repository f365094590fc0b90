"""The operator's retry, written once for both stores: what a retry of failed or cancelled
jobs does in its transaction (a workflow step's retry puts the steps it cancelled back to
waiting; a step whose upstream step has not succeeded, and a token, are left as they are),
and the one error line that says what to retry instead. Each store gives its transaction:
``retry_many`` and ``_blocking_root``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from litejobs.store.schema import TOKEN_TASK

if TYPE_CHECKING:
    from litejobs.store.protocols import WorkflowTx

__all__ = ["ManualRetry", "blocking_root", "retry_in"]

#: A step blocked from a retry: (id, its upstream step that has not succeeded, task).
Blocked = tuple[int, int | None, str]


def retry_in(tx: WorkflowTx, ids: Sequence[int], retries: int,
             requeue: Callable[[Sequence[int]], int]) -> tuple[int, list[Blocked]]:
    """Retry ``ids`` in ``tx``: steps waiting on running upstream steps wait again, the rest
    go back to queued (``requeue``: the store's statement, returns how many), and the steps
    they had cancelled wait again. Returns how many were retried and the blocked ones."""
    stuck = tx.blocked_steps(ids)
    skip = {job_id for job_id, _, _ in stuck}
    todo = [i for i in ids if i not in skip] if skip else ids
    n = tx.wait_again(todo, retries)
    n += requeue(todo)
    tx.revive(todo)
    return n, stuck


def blocking_root(tx: WorkflowTx, job_id: int) -> tuple[int, str, str] | None:
    """The step (id, state, task) at the root of what blocks ``job_id``: the failed one (its
    direct upstream step may be blocked itself) or the token that ended."""
    root = tx.blocker(job_id)
    for _ in range(100_000):  # a chain of steps is finite; this bounds a broken store
        if root is None or root[2] == TOKEN_TASK or root[1] == "failed":
            break
        deeper = tx.blocker(root[0])
        if deeper is None:
            break
        root = deeper
    return root


class ManualRetry:
    """``retry`` of one job (see protocols.Admin), over the store's ``retry_many``."""

    def retry_many(self, ids: Sequence[int], retries: int, now: float,
                   blocked: list[Blocked] | None = None) -> int:
        raise NotImplementedError

    def _blocking_root(self, job_id: int) -> tuple[int, str, str] | None:
        """``blocking_root`` in a transaction of the store's (reads only)."""
        raise NotImplementedError

    def retry(self, job_id: int, retries: int, now: float) -> bool:
        """Put a failed or cancelled job back to queued with ``retries`` more retries (a
        workflow step: the steps it cancelled wait again). Raises ValueError for a step whose
        upstream step has not succeeded, and for a token."""
        blocked: list[Blocked] = []
        done = self.retry_many([job_id], retries, now, blocked)
        for _, upstream, task in blocked:
            if task == TOKEN_TASK:
                raise ValueError(f"job {job_id} is a token, which is not retried: create a new "
                                 "token (app.create_token) and enqueue the steps after it again")
            raise ValueError(self._blocked_advice(job_id, upstream))
        return done == 1

    def _blocked_advice(self, job_id: int, upstream: int | None) -> str:
        """What to retry instead: the step that failed at the root of what blocks ``job_id``,
        or the token that ended."""
        root = self._blocking_root(job_id)
        head = f"job {job_id} waits on step {upstream}, which has not succeeded"
        if root is None:
            return f"{head}: retry it first"
        if root[2] == TOKEN_TASK:
            return (f"{head}: it waits on token {root[0]}, which {root[1]} (a token is not "
                    "retried): create a new token and enqueue the steps after it again")
        return f"{head}: retry {root[0]} instead (the steps it cancelled wait again)"
