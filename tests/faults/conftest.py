"""The fault-injection suite's report: every scenario records its figures here.

Each scenario calls the ``report`` fixture once with its figures (jobs enqueued, succeeded,
lost, duplicate runs, errors surfaced to producers, and anything scenario-specific). At the
end of the session the rows are written to ``docs/reliability.md`` when
``LITEJOBS_RELIABILITY_REPORT`` names that file (``.ci/run`` and a full local run set it), so
the published table is always the output of a real run.

Each row names its store (a scenario taking the ``database`` fixture runs once on SQLite and
once on PostgreSQL) and the integrity check it ended with, as it answered: the ``integrity``
function of the scenario's module is watched, so the row says what was checked, not what a
sentence assumes.

Scenarios marked ``slow`` repeat fewer times in CI (``CI`` set) than locally; each says so in
its ``note``.

A randomised scenario takes the ``seed`` fixture: ``LITEJOBS_SEED`` when set, else a fresh one.
It is printed at the start, added to a failure's report (``replay: LITEJOBS_SEED=N``) and
recorded among the scenario's figures, so any run can be replayed.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import random
from collections.abc import Callable, Iterator
from typing import Any

import pytest

ROWS: list[dict[str, Any]] = []
FULL = not os.environ.get("CI")
_SEED = pytest.StashKey[int]()
#: The check each store's scenarios end with, as the table names it.
CHECKS = {"sqlite": "`PRAGMA integrity_check`", "postgres": "`quick_check`"}
STORES = {"sqlite": "SQLite", "postgres": "PostgreSQL"}


def repetitions(full: int, ci: int) -> int:
    """How many times a slow scenario repeats: ``full`` locally, ``ci`` in CI."""
    return full if FULL else ci


@pytest.fixture
def seed(request: pytest.FixtureRequest) -> int:
    """The seed of this scenario's random choices (``random.Random(seed)``): LITEJOBS_SEED
    when set, to replay a failure, else a fresh one; printed, and named in a failure."""
    raw = os.environ.get("LITEJOBS_SEED", "").strip()
    if raw:
        try:
            value = int(raw)
        except ValueError:
            pytest.fail(f"LITEJOBS_SEED must be an integer (the seed a failure printed), not "
                        f"{raw!r}", pytrace=False)
    else:
        value = random.SystemRandom().randrange(2**32)
    request.node.stash[_SEED] = value
    print(f"seed {value} (replay: LITEJOBS_SEED={value} python -m pytest "
          f"'{request.node.nodeid}')")
    return value


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    seed = item.stash.get(_SEED, None)
    if seed is not None and report.failed:
        line = f"replay: LITEJOBS_SEED={seed} python -m pytest '{item.nodeid}'"
        if isinstance(report.longrepr, str):
            report.longrepr += "\n" + line
        elif hasattr(report.longrepr, "addsection"):
            report.longrepr.addsection("seed", line)
        report.sections.append(("seed", line))
    return report


def _store(request: pytest.FixtureRequest) -> str:
    """"sqlite" or "postgres": the ``database`` parameter, else SQLite (the scenarios that do
    not take it work on a SQLite file)."""
    callspec = getattr(request.node, "callspec", None)
    return str(callspec.params.get("database", "sqlite")) if callspec else "sqlite"


@pytest.fixture
def report(request: pytest.FixtureRequest,
           monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., None]]:
    """``report(enqueued=…, succeeded=…, lost=…, duplicates=…, producer_errors=…, note=…)``."""
    recorded: list[dict[str, Any]] = []
    checks: list[str] = []
    check = getattr(request.module, "integrity", None)
    if callable(check):
        def watched(db: Any) -> str:
            answer = str(check(db))
            checks.append(answer)
            return answer

        monkeypatch.setattr(request.module, "integrity", watched)

    def record(**figures: Any) -> None:
        doc = (request.function.__doc__ or request.node.name).strip().splitlines()[0]
        recorded.append({"scenario": request.node.name, "title": doc, **figures})

    yield record
    store = _store(request)
    answered = sorted(set(checks))
    integrity = f"{CHECKS[store]}: {', '.join(answered)}" if answered else "—"
    ROWS.extend({**row, "store": STORES[store], "integrity": integrity} for row in recorded)


def _server() -> str:
    """The PostgreSQL server the rows of that store ran on: version and durability."""
    url = os.environ.get("LITEJOBS_TEST_POSTGRES", "")
    try:
        import psycopg

        with psycopg.connect(url, connect_timeout=5) as conn:
            got = {name: conn.execute(f"SHOW {name}").fetchone()[0]  # type: ignore[index]
                   for name in ("server_version", "fsync", "synchronous_commit")}
    except Exception as exc:  # the report still gets written, saying what is unknown
        return f"unknown ({type(exc).__name__})"
    return (f"{got['server_version'].split()[0]} on this machine (`.ci/postgres`: "
            f"fsync={got['fsync']}, synchronous_commit={got['synchronous_commit']}; the "
            "scenarios kill litejobs's processes, never the server's)")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    target = os.environ.get("LITEJOBS_RELIABILITY_REPORT")
    if not target or not ROWS:
        return
    columns = ["enqueued", "succeeded", "lost", "duplicates", "producer_errors"]
    stores = sorted({row["store"] for row in ROWS})
    lines = [
        "# Reliability: the fault-injection suite's figures",
        "",
        "Generated by `tests/faults/` (`LITEJOBS_RELIABILITY_REPORT=docs/reliability.md "
        "python -m pytest tests/faults`, with `LITEJOBS_TEST_POSTGRES` set for the "
        "PostgreSQL rows); do not edit by hand.",
        "",
        f"- date: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC",
        f"- machine: {platform.system()} {platform.release()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}",
        f"- stores: {', '.join(stores)}",
        *([f"- PostgreSQL: {_server()}"] if STORES["postgres"] in stores else []),
        f"- repetitions: {'full (local run)' if FULL else 'reduced (CI run)'}",
        f"- session exit status: {exitstatus}",
        "",
        "One row per scenario and store: the process faults run on both stores (a SQLite "
        "file; a fresh schema on the PostgreSQL server), the input and storage faults on a "
        "SQLite file (their subject is the file, the CLI or the input). *integrity*: the "
        "check the scenario ended with and what it answered: on SQLite `PRAGMA "
        "integrity_check` (every page of the file, read-only connection); on PostgreSQL, "
        "which keeps its own pages, the store's `quick_check` (litejobs's tables all there, "
        "no workflow step waiting on nothing); — where the scenario ran none. The process "
        "faults also audit the log their tasks "
        "append to (job id, attempt, pid, start, end) against the database. *lost*: committed "
        "jobs that did not end in their expected terminal state. *duplicates*: runs beyond "
        "the first that were not caused by killing the process running the earlier one.",
        "",
        "| scenario | store | " + " | ".join(columns) + " | integrity | notes |",
        "|---|---|" + "---:|" * len(columns) + "---|---|",
    ]
    for row in sorted(ROWS, key=lambda r: r["scenario"]):
        extra = {k: v for k, v in row.items()
                 if k not in (*columns, "scenario", "title", "note", "store", "integrity")}
        note = row.get("note", "")
        if extra:
            note = (note + "; " if note else "") + ", ".join(
                f"{k}={json.dumps(v)}" for k, v in extra.items())
        cells = [str(row.get(c, "—")) for c in columns]
        lines.append(f"| {row['title']} | {row['store']} | " + " | ".join(cells)
                     + f" | {row['integrity']} | {note} |")
    lines.append("")
    with open(target, "w", encoding="utf-8") as f:
        f.write("\n".join(lines))
