"""The ``seed`` fixture of the fault suite: printed, named in a failure, replayed from
LITEJOBS_SEED, refused with one line when it is not an integer. Real pytest runs on a scenario
that fails on purpose, in a directory whose conftest is the fault suite's."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.conftest import clean_env

SCENARIO = '''
import random

def test_random_choices(seed):
    rng = random.Random(seed)
    print("draws", [rng.randrange(1000) for _ in range(5)])
    assert False, "this scenario fails on purpose"
'''


def run(tmp_path: Path, **env: str) -> str:
    (tmp_path / "conftest.py").write_text("from tests.faults.conftest import *  # noqa\n"
                                          "from tests.faults.conftest import "
                                          "pytest_runtest_makereport  # noqa\n")
    (tmp_path / "test_scenario.py").write_text(SCENARIO)
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "-o", "addopts=", str(tmp_path / "test_scenario.py")],
                          cwd=tmp_path, env=clean_env(tmp_path / "unused.db", **env),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    return proc.stdout


def test_a_failure_names_its_seed_and_the_seed_replays_it(tmp_path: Path) -> None:
    first = run(tmp_path)
    seeds = set(re.findall(r"LITEJOBS_SEED=(\d+)", first))
    assert len(seeds) == 1, first  # printed at the start and in the failure: the same one
    (seed,) = seeds
    assert f"seed {seed} (replay: LITEJOBS_SEED={seed}" in first, first
    draws = re.search(r"draws (\[.*\])", first)
    assert draws, first
    again = run(tmp_path, LITEJOBS_SEED=seed)
    assert f"draws {draws.group(1)}" in again, (first, again)
    assert f"replay: LITEJOBS_SEED={seed} python -m pytest" in again, again


def test_a_seed_that_is_not_an_integer_is_refused_in_one_line(tmp_path: Path) -> None:
    out = run(tmp_path, LITEJOBS_SEED="abc")
    assert "LITEJOBS_SEED must be an integer (the seed a failure printed), not 'abc'" in out
    assert "Traceback" not in out, out
