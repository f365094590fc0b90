"""A host frozen in the middle of its turn's transaction (a VM paused, a laptop lid, SIGSTOP)
must not stall the other hosts: the server ends a session left silent mid-transaction
(``idle_in_transaction_session_timeout``), its transaction rolls back, its locks go, and the
frozen process, resumed, learns it in one line. Behaviour, not timing: the deadlines here are
generous; without the timeout the live claim waits for as long as the freeze lasts."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from litejobs.store import QueueLimits
from litejobs.store.postgres import PostgresStore
from tests.conftest import _stat, wait_for
from tests.postgres.stores import enqueue, job

NARROW = [QueueLimits("narrow", 2, None)]

#: The frozen host: claims from the limited queue (its row locked FOR UPDATE until commit),
#: stops itself before committing, and once resumed reports what its write raised.
FROZEN = """
import json, os, signal, sys, time
from litejobs.errors import StorageError
from litejobs.store import QueueLimits
from litejobs.store.postgres import PostgresStore

store = PostgresStore(sys.argv[1])
def turn(tx):
    claimed = tx.claim(["frozen:1:w1"], [QueueLimits("narrow", 2, None)], time.time(), 30)
    assert claimed, "the frozen host claimed nothing"
    os.kill(os.getpid(), signal.SIGSTOP)  # frozen here, the queue's row locked
    return claimed
try:
    store.write(turn)
    print(json.dumps({"committed": True}))
except StorageError as exc:
    # its next call reconnects: the live host holds both jobs, so it claims none
    again = store.write(lambda tx: tx.claim(["frozen:1:w1"], [QueueLimits("narrow", 2, None)],
                                            time.time(), 30))
    print(json.dumps({"error": str(exc), "then_claimed": len(again)}))
"""


def test_a_frozen_transaction_loses_its_locks_and_says_so_when_resumed(
        pg_url: str, tmp_path: Path) -> None:
    store = PostgresStore(pg_url)
    try:
        ids = enqueue(store, job(task="t.a", queue="narrow"), job(task="t.b", queue="narrow"))
        script = tmp_path / "frozen.py"
        script.write_text(FROZEN)
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
        frozen = subprocess.Popen([sys.executable, str(script), pg_url], env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            wait_for(lambda: (_stat(frozen.pid) or ("", 0))[0] == "T", 20,
                     "the frozen host to stop mid-transaction")
            done: list[list[Any]] = []

            def live_turn() -> None:  # another host's turn: claim from the same queue
                done.append(store.write(lambda tx: tx.claim(
                    ["live:1:w1", "live:1:w2"], NARROW, time.time(), 30)))

            live = threading.Thread(target=live_turn, daemon=True)
            live.start()
            live.join(15)
            assert done, ("a live host's claim still waits on the frozen host's lock of the "
                          "limited queue's row")
            # Nothing lost: the frozen host's claim rolled back, the live host has both jobs.
            assert sorted(int(r["id"]) for r in done[0]) == sorted(ids)
        finally:
            frozen.send_signal(signal.SIGCONT)
            out, err = frozen.communicate(timeout=30)
        assert frozen.returncode == 0, err
        said = json.loads(out.strip().splitlines()[-1])
        assert "error" in said, f"the frozen host's transaction was committed: {said}"
        line = said["error"]
        assert "\n" not in line
        assert "silent mid-transaction" in line and "nothing of this call was committed" in line
        assert "reconnects" in line
        leased = {int(r["id"]): r for r in (store.get_job(i) for i in ids) if r is not None}
        assert all(str(r["leased_by"]).startswith("live:") for r in leased.values()), leased
        assert said["then_claimed"] == 0  # its next call reconnected, and took nothing
    finally:
        store.close()
