"""`litejobs explain` on a host whose clock is off (libfaketime): the stored run_at is the
PostgreSQL server's time, so "N s from now" is measured on the server's clock, not this host's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from tests.apps import basic
from tests.conftest import REPO, clean_env
from tests.postgres.skew import needs_faketime, skewed_env

pytestmark = [pytest.mark.timeout(60), needs_faketime]


@pytest.mark.parametrize(("offset", "hours"), [("-1h", -1), ("+1h", 1)])
def test_the_skew_is_real(offset: str, hours: int) -> None:
    """The skewed environment (tests/postgres/skew.py) moves a child's clock, and its
    children's: else the skewed-host tests would prove nothing."""
    code = ("import subprocess, sys, time; print(time.time()); sys.stdout.flush(); "
            "subprocess.run([sys.executable, '-c', 'import time; print(time.time())'])")
    before = time.time()
    done = subprocess.run([sys.executable, "-c", code], env={**os.environ, **skewed_env(offset)},
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    for line in done.stdout.split():
        assert float(line) - before == pytest.approx(hours * 3600, abs=30), done.stdout


@pytest.mark.parametrize("offset", ["-1h", "+1h"])
def test_explain_on_a_skewed_host_counts_the_delay_on_the_servers_clock(
        pg_url: str, offset: str) -> None:
    app = basic.make_app(pg_url)
    job = app.tasks["basic.add"].options(delay=600.0).enqueue(1, 1)
    done = subprocess.run(
        [sys.executable, "-m", "litejobs", "explain", str(job.id), "--database", pg_url,
         "--json"],
        cwd=REPO, env=clean_env(pg_url, **skewed_env(offset)),  # type: ignore[arg-type]
        capture_output=True,
        text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert found["reason"] == "scheduled", found
    # On this host's clock it would say 0.0 (an hour ahead) or 4200 s (an hour behind).
    seconds = float(found["message"].split("; ")[1].split(" s from now")[0])
    assert 590 <= seconds <= 600, found["message"]
