"""A supervisor's claim that reached the server's commit but whose answer was lost (the
connection dropped at COMMIT: a network cut, a failover) must not leave the jobs it claimed
leased to it with no worker until their lease runs out (then rescued, counted as a crash).

A real supervisor, a real server, a real dropped connection: ``CommitCutter`` sits between
them and closes both sockets once the server has committed a claim, before the answer is
relayed. The lease is 30 s; the jobs must run long before it would run out."""

from __future__ import annotations

import re
import signal
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

import litejobs
from litejobs.store.postgres import PostgresStore
from tests.apps import basic
from tests.conftest import REPO, JobLog, launch_supervisor, wait_for
from tests.postgres.commitcut import CommitCutter

LEASE = 30.0


def _through(url: str, port: int) -> str:
    """``url`` with its host and port replaced by the proxy's; no TLS or GSS on the way."""
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)
    where = f"127.0.0.1:{port}"
    netloc_out = f"{netloc[0]}@{where}" if len(netloc) == 2 else where
    query = "&".join(filter(None, [parts.query, "sslmode=disable", "gssencmode=disable"]))
    return urlunsplit((parts.scheme, netloc_out, parts.path, query, parts.fragment))


@pytest.mark.parametrize("path", ["transaction", "alone", "drained"])
def test_jobs_of_a_claim_whose_commit_answer_was_lost_run_at_once_and_once(
        pg_url: str, tmp_path: Path, path: str) -> None:
    """``transaction``: the queue has a concurrency limit, so the idle supervisor claims in
    its transaction and the answer to its COMMIT is lost. ``alone``: an unlimited queue, the
    one-statement claim (autocommit) whose answer is lost, most runs (a claim that falls on
    the fallback poll's turn runs in that turn's transaction: its COMMIT's answer is lost).
    ``drained``: as ``transaction``, then SIGTERM during the back-off after the error: the
    supervisor exits at once (nothing runs) and gives the jobs back on its way out."""
    parts = urlsplit(pg_url)
    proxy = CommitCutter(parts.hostname or "127.0.0.1", parts.port or 5432)
    sup_url = _through(pg_url, proxy.port)
    config = tmp_path / "litejobs.toml"
    limit = "[queues.cut]\nconcurrency = 10\n" if path != "alone" else ""
    config.write_text(f'app = "tests.apps.basic:app"\nlease = {LEASE}\n{limit}')
    cmd = [sys.executable, "-m", "litejobs", "run", "--app", "tests.apps.basic:app",
           "--workers", "2", "--config", str(config), "--database", sup_url]
    log = JobLog(tmp_path / "jobs.log")
    store = PostgresStore(pg_url)
    sup = None
    try:
        sup = launch_supervisor(cmd, REPO, sup_url,  # type: ignore[arg-type]
                                tmp_path / "supervisor.log")
        app = basic.make_app(pg_url)
        logged = app.tasks["basic.logged"]
        proxy.arm()  # the supervisor idles: the next claim that takes jobs is cut
        # one commit, one ring: the supervisor's two idle workers get both in one claim
        ids = [j.id for j in app.enqueue_many(
            [logged.options(queue="cut").prepare(str(log)) for _ in range(2)])]
        wait_for(proxy.cut.is_set, 20, "the claim's commit answer to be cut",
                 details=sup.output)
        cut_at = time.monotonic()
        print(f"the answer lost: {proxy.how}'s")
        if path != "alone":
            assert proxy.how == "COMMIT"
        if path == "drained":
            sup.send(signal.SIGTERM)
            assert sup.wait(20) == 0, sup.output()
            for i in ids:  # back to queued as never claimed (or run once, if a turn came first)
                row = store.get_job(i) or {}
                attempts = [(a.attempt, a.outcome) for a in store.attempts(i)]
                print(f"job {i} after the drain: {row.get('state')}")
                if row.get("state") == "queued":
                    assert row["attempt"] == 0 and attempts == [], (row, attempts)
                else:
                    assert attempts == [(1, "succeeded")], (row, attempts)
        else:
            def done() -> bool:
                return all((store.get_job(i) or {}).get("state") == "succeeded" for i in ids)

            # well under the lease: without the fix they wait for it (30 s), then are rescued
            wait_for(done, 10, "the claimed jobs to run", details=sup.output)
            assert time.monotonic() - cut_at < LEASE / 3
            for i in ids:
                assert len(log.starts(i)) == 1, (i, log.records())  # each ran exactly once
                attempts = store.attempts(i)
                assert [(a.attempt, a.outcome) for a in attempts] == [(1, "succeeded")], attempts
        out = sup.output()
        lost = [line for line in out.splitlines() if "may or may not have been committed" in line]
        assert len(lost) == 1, out
        back = [line for line in out.splitlines() if "gave back" in line]
        assert len(back) == 1, out
        # the jobs of the lost claim (both, or one when a worker was not ready yet)
        given = re.search(r"gave back (\d+) job\(s\) .*\(jobs? ([\d, ]+)\)", back[0])
        assert given is not None, back
        named = [int(i) for i in given.group(2).split(", ")]
        assert int(given.group(1)) == len(named) >= 1 and set(named) <= set(ids), back
        assert "rescued" not in out and "stale" not in out, out
    finally:
        if sup is not None:
            sup.kill_group()
        proxy.close()
        store.close()


def test_an_enqueue_whose_answer_was_lost_says_it_may_have_been_committed(
        pg_url: str) -> None:
    """The producer's side: an enqueue whose commit reached the server but whose answer was
    lost gets one StorageError line that says it may have been committed (it was) and what
    to do; it must not say "nothing of this call was committed". Both of the enqueue's
    paths: a transaction (a queue not seen before) and the one autocommit statement."""
    parts = urlsplit(pg_url)
    proxy = CommitCutter(parts.hostname or "127.0.0.1", parts.port or 5432,
                         mark=b"INSERT INTO jobs")
    app = litejobs.App(_through(pg_url, proxy.port))
    store = PostgresStore(pg_url)
    try:
        for how in ("COMMIT", "statement"):
            proxy.arm()
            with pytest.raises(litejobs.StorageError) as caught:
                app.enqueue("t.work", [1])
            assert proxy.how == how
            line = str(caught.value)
            assert "\n" not in line and "may or may not have been committed" in line, line
            assert "nothing of this call was committed" not in line and "key=" in line, line
            # the next call reconnects (and, its queue now known, takes the one statement)
            assert app.enqueue("t.work", [2]).id > 0
        # it was committed, both times: the line was right to say so
        assert sorted(r["args"] for r in store.list_jobs()) == ["[1]", "[1]", "[2]", "[2]"]
    finally:
        app.store.close()
        proxy.close()
        store.close()
