"""Assertions on what a test enqueued (``litejobs.testing`` exports them).

A job counts as enqueued while it is pending (waiting, scheduled or queued), as Oban's
``assert_enqueued`` counts available and scheduled jobs: one that ran is no longer enqueued.
Arguments are compared as stored (JSON: a tuple is a list).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from litejobs.serialization import encode

if TYPE_CHECKING:
    from litejobs.app import App
    from litejobs.job import Job
    from litejobs.task import Task

__all__ = ["assert_enqueued", "enqueued_jobs", "refute_enqueued"]

PENDING = ("waiting", "scheduled", "queued")
#: Jobs listed in a failed assertion's message (the rest are counted).
SHOWN = 20


def _app_name(task: Task[Any, Any] | str, app: App | None) -> tuple[App, str]:
    if isinstance(task, str):
        if app is None:
            raise TypeError(f"give the app with a task name: enqueued_jobs({task!r}, app=app)")
        return app, task
    return (app or task.app), task.name


def enqueued_jobs(task: Task[Any, Any] | str, *, app: App | None = None) -> list[Job]:
    """The pending jobs of ``task`` (a Task, or a name with ``app=``), oldest first."""
    owner, name = _app_name(task, app)
    jobs = [j for j in owner.jobs(task=name, limit=1_000_000) if j.state.value in PENDING]
    return jobs[::-1]


def _as_stored(value: Any) -> Any:
    return json.loads(encode(value))


def _matches(job: Job, args: Sequence[Any] | None, kwargs: Mapping[str, Any] | None) -> bool:
    if args is not None and job.args != _as_stored(list(args)):
        return False
    if kwargs is not None:
        have = job.kwargs
        want = _as_stored(dict(kwargs))
        if any(k not in have or have[k] != v for k, v in want.items()):
            return False
    return True


def _describe(name: str, args: Sequence[Any] | None, kwargs: Mapping[str, Any] | None) -> str:
    what = [f"task {name!r}"]
    if args is not None:
        what.append(f"args={list(args)!r}")
    if kwargs is not None:
        what.append(f"kwargs including {dict(kwargs)!r}")
    return " with ".join([what[0], ", ".join(what[1:])]) if len(what) > 1 else what[0]


def _listing(name: str, jobs: list[Job]) -> str:
    if not jobs:
        return f"no job of task {name!r} is enqueued"
    lines = [f"enqueued jobs of task {name!r} ({len(jobs)}):"]
    lines += [f"  #{j.id} {j.state.value} args={j.args!r} kwargs={j.kwargs!r}"
              for j in jobs[:SHOWN]]
    if len(jobs) > SHOWN:
        lines.append(f"  … and {len(jobs) - SHOWN} more")
    return "\n".join(lines)


def assert_enqueued(task: Task[Any, Any] | str, args: Sequence[Any] | None = None,
                    kwargs: Mapping[str, Any] | None = None, count: int | None = None, *,
                    app: App | None = None) -> list[Job]:
    """Assert that a pending job of ``task`` matches (``args``: all its positional arguments;
    ``kwargs``: these keywords among its own); with ``count``, exactly that many do. Returns
    the matching jobs; the AssertionError lists what was enqueued."""
    owner, name = _app_name(task, app)
    jobs = enqueued_jobs(name, app=owner)
    found = [j for j in jobs if _matches(j, args, kwargs)]
    if (count is None and not found) or (count is not None and len(found) != count):
        expected = "a job" if count is None else f"{count} job{'s' * (count != 1)}"
        raise AssertionError(f"expected {expected} of {_describe(name, args, kwargs)} "
                             f"enqueued, found {len(found)}; {_listing(name, jobs)}")
    return found


def refute_enqueued(task: Task[Any, Any] | str, args: Sequence[Any] | None = None,
                    kwargs: Mapping[str, Any] | None = None, *, app: App | None = None) -> None:
    """Assert that no pending job of ``task`` matches ``args``/``kwargs`` (any, without)."""
    owner, name = _app_name(task, app)
    jobs = enqueued_jobs(name, app=owner)
    found = [j for j in jobs if _matches(j, args, kwargs)]
    if found:
        raise AssertionError(f"expected no job of {_describe(name, args, kwargs)} enqueued, "
                             f"found {len(found)}; {_listing(name, jobs)}")
