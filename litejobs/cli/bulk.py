"""Bulk retry, cancel and purge: the filters, the confirmation, the batches."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import click

from litejobs.app import App
from litejobs.cli.common import F, fail
from litejobs.job import iso
from litejobs.moments import parse_moment

__all__ = ["bulk", "filter_options", "parse_since"]


def filter_options(fn: F) -> F:
    fn = click.option("--since", help="Only jobs created since: a duration ago (2h, 7d) or "
                      "an ISO-8601 time.")(fn)
    fn = click.option("--queue", help="Only jobs of this queue.")(fn)
    fn = click.option("--task", help="Only jobs of this task.")(fn)
    fn = click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")(fn)
    return fn


def parse_since(text: str | None, flag: str = "--since") -> float | None:
    if text is None:
        return None
    try:
        return parse_moment(text, flag, time.time())
    except ValueError as exc:
        raise fail(str(exc)) from None


def _matching_ids(app: App, states: list[str], task: str | None, queue: str | None,
                  since: float | None, before: float | None) -> Iterator[list[int]]:
    """Pages of the ids matching the filters, created in [since, before), in id order.

    "Created before" is the set difference of two id-ordered streams the store already
    serves (all matches, and those created since ``before``); a job inserted between the
    two reads is newer than ``before`` and so lands in the second one too."""
    last_id = 0
    while True:
        ids = app.store.ids_matching(states, task, queue, since, after_id=last_id)
        if not ids:
            return
        if before is not None:
            newer: set[int] = set()
            after = last_id
            while True:
                page = app.store.ids_matching(states, task, queue,
                                              before if since is None else max(since, before),
                                              after_id=after)
                newer.update(i for i in page if i <= ids[-1])
                if not page or page[-1] >= ids[-1]:
                    break
                after = page[-1]
            last_id = ids[-1]
            ids = [i for i in ids if i not in newer]
            if not ids:
                continue
        else:
            last_id = ids[-1]
        yield ids


def bulk(app: App, verb: str, states: list[str], task: str | None, queue: str | None,
          since: str | None, yes: bool, act: Callable[[list[int]], int],
          older_than: str | None = None) -> None:
    """Count the matching jobs, confirm, then act on them in short batches with progress."""
    cutoff = parse_since(since)
    before = parse_since(older_than, "--older-than")
    total = app.store.count_matching(states, task, queue, cutoff)
    if before is not None:
        newer = before if cutoff is None else max(cutoff, before)
        total -= app.store.count_matching(states, task, queue, newer)
    kinds = "/".join(states)
    which = ""
    if since is not None:
        which += f" created since {iso(cutoff)} (newer than {since})"
        if verb == "purge" and older_than is None:
            which += f", i.e. the newest; for the older ones use --older-than {since}"
    if older_than is not None:
        which += f" created before {iso(before)} (older than {older_than})"
    if total == 0:
        click.echo(f"no {kinds} jobs{which} match; nothing to {verb}")
        return
    if not yes:
        click.confirm(f"{verb} {total} {kinds} job(s){which}?", abort=True)
    done = 0
    for ids in _matching_ids(app, states, task, queue, cutoff, before):
        done += act(ids)
        if total > 1000:
            click.echo(f"  {done}/{total}", err=True)
    app.ring(b"c" if verb == "cancel" else b"e")
    click.echo(f"{verb}: {done} job(s)")
