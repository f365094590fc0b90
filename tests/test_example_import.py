"""examples/import_pipeline end to end: a CSV split into parts loaded in parallel under a real
`litejobs run`, combined, held for approval by a token completed from the command line, then
published; and in-process (run_until_idle): a refusal, a token that times out, and a bad file
that fails the split, is fixed, and resumes with `retry`.
"""

from __future__ import annotations

import ast
import csv
import importlib.util
import itertools
import json
import os
import random
import re
import signal
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from litejobs.testing import Clock, run_until_idle
from tests.conftest import REPO, SupervisorProcess, clean_env, wait_for

EXAMPLE = REPO / "examples" / "import_pipeline"
SEED = 1212
_loaded = itertools.count()


@pytest.fixture
def pipeline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """The example's pipeline.py, loaded afresh on a database under tmp_path (its tasks have
    explicit names, so this module and `litejobs run`'s `pipeline` agree on them)."""
    for name in [k for k in os.environ if k.startswith("LITEJOBS_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("LITEJOBS_DATABASE", str(tmp_path / "imports.db"))
    spec = importlib.util.spec_from_file_location(f"import_pipeline_{next(_loaded)}",
                                                  EXAMPLE / "pipeline.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_orders(path: Path, rows: int, seed: int = SEED) -> dict[str, Any]:
    """An orders CSV with a bad row now and then; returns what the import should find."""
    print(f"orders seed {seed}")
    rng = random.Random(seed)
    totals: dict[str, Decimal] = {}
    bad = 0
    with open(path, "w", newline="") as f:
        out = csv.writer(f, lineterminator="\n")
        out.writerow(["order_id", "region", "amount"])
        for i in range(1, rows + 1):
            region = rng.choice(["north", "south", "east", "west", "a, quoted"])
            if rng.random() < 0.01:
                out.writerow([i, region, "n/a"])
                bad += 1
                continue
            amount = Decimal(rng.randint(1, 999_999)) / 100
            totals[region] = totals.get(region, Decimal(0)) + amount
            out.writerow([i, region, f"{amount:.2f}"])
    return {"rows": rows - bad, "bad": bad,
            "totals": {r: f"{v:.2f}" for r, v in sorted(totals.items())}}


def steps(run: Any, task: str) -> list[Any]:
    return [j for j in run.jobs() if j.task == task]


def litejobs_cli(db: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "litejobs", *args, "--database", str(db)],
                          cwd=EXAMPLE, env=clean_env(db), capture_output=True, text=True,
                          timeout=60)


def test_import_runs_under_litejobs_run_and_publishes_once_approved(
        pipeline: ModuleType, tmp_path: Path) -> None:
    db = tmp_path / "imports.db"
    orders = tmp_path / "orders.csv"
    expected = write_orders(orders, 3500)
    run, token = pipeline.start_import(str(orders), parts=3)

    # As the example's README says: `litejobs run` in the example's directory.
    log_path = tmp_path / "supervisor.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "litejobs", "run", "--workers", "2"], cwd=EXAMPLE,
            env=clean_env(db, LITEJOBS_DATABASE=str(db)), stdin=subprocess.DEVNULL,
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    sup = SupervisorProcess(proc, log_path, 0.0)
    try:
        wait_for(lambda: [j.state.value for j in steps(run, "imports.combine")] == ["succeeded"],
                 60, "the parts loaded and combined", details=sup.output)
        parts = steps(run, "imports.load_part")
        assert len(parts) == 3
        assert [p.state.value for p in parts] == ["succeeded"] * 3
        assert all(p.progress is not None and p.progress[0] == 1.0 for p in parts)
        assert sum(p.result(0)["rows"] + p.result(0)["bad"] for p in parts) == 3500
        # Combined, but held: publish waits on the token, nothing is published yet.
        [publish] = steps(run, "imports.publish")
        assert publish.state.value == "waiting"
        assert run.state == "running"
        assert not Path(pipeline.published_path(str(orders))).exists()

        done = litejobs_cli(db, "token", "complete", str(token.id),
                            "--data", '{"approved": true, "by": "ada"}')
        assert done.returncode == 0, done.stderr
        result = run.result(timeout=60)
        assert result == {"published": True, "path": pipeline.published_path(str(orders)),
                          "rows": expected["rows"]}
        figures = json.loads(Path(result["path"]).read_text())
        assert {k: figures[k] for k in ("rows", "bad", "totals")} == expected
        assert figures["approval"] == {"approved": True, "by": "ada"}
        assert run.state == "succeeded"

        again = litejobs_cli(db, "token", "complete", str(token.id), "--data", "true")
        assert again.returncode != 0
        assert "already completed" in again.stderr + again.stdout

        sup.send(signal.SIGTERM)
        assert sup.wait(30) == 0
    finally:
        sup.kill_group()


def test_a_refusal_publishes_nothing(pipeline: ModuleType, tmp_path: Path) -> None:
    orders = tmp_path / "orders.csv"
    write_orders(orders, 200)
    run, token = pipeline.start_import(str(orders), parts=4)
    run_until_idle(pipeline.app)
    assert run.state == "running"  # waiting for approval
    pipeline.app.complete_token(token, data={"approved": False, "note": "totals look off"})
    run_until_idle(pipeline.app)
    assert run.result(0) == {"published": False,
                             "approval": {"approved": False, "note": "totals look off"}}
    assert not Path(pipeline.published_path(str(orders))).exists()


def test_no_approval_in_time_cancels_the_publish(pipeline: ModuleType, tmp_path: Path) -> None:
    orders = tmp_path / "orders.csv"
    write_orders(orders, 200)
    clock = Clock()
    run, token = pipeline.start_import(str(orders), approve_within=3600)
    run_until_idle(pipeline.app, clock=clock)
    clock.advance(3601)
    run_until_idle(pipeline.app, clock=clock)
    assert run.state == "failed"
    [publish] = steps(run, "imports.publish")
    assert publish.state.value == "cancelled"
    assert pipeline.app.get_job(token.id).state.value == "failed"
    with pytest.raises(ValueError, match="token"):
        pipeline.app.complete_token(token, data={"approved": True})


def test_a_bad_file_fails_the_split_and_retry_resumes(pipeline: ModuleType,
                                                       tmp_path: Path) -> None:
    orders = tmp_path / "orders.csv"
    orders.write_text("id;region;amount\n1;north;2.50\n")
    run, token = pipeline.start_import(str(orders))
    run_until_idle(pipeline.app)
    [split] = steps(run, "imports.split")
    [publish] = steps(run, "imports.publish")
    assert split.state.value == "failed" and "the header is" in (split.error or "")
    assert publish.refresh().state.value == "cancelled"
    assert publish.error == f"upstream step {split.id} failed"
    assert run.state == "failed"

    expected = write_orders(orders, 300)  # the file fixed: retry the step that failed
    assert split.retry()
    assert publish.refresh().state.value == "waiting"
    run_until_idle(pipeline.app)
    pipeline.app.complete_token(token, data={"approved": True})
    run_until_idle(pipeline.app)
    assert run.result(0)["rows"] == expected["rows"]
    figures = json.loads(Path(pipeline.published_path(str(orders))).read_text())
    assert figures["totals"] == expected["totals"]


def test_the_readme_workflows_snippets_run_as_shown(tmp_path: Path) -> None:
    """The README's Workflows section, which ends by pointing at this example: its python
    blocks run in order against a real `litejobs run` (task definitions go into a module the
    workers import, the rest into a script) and print what their comments say."""
    text = (REPO / "README.md").read_text()
    start = text.index("### Workflows\n")
    section = text[start:text.index("\n### ", start + 1)]
    defs, calls = [], []
    for block in re.findall(r"```python\n(.*?)```", section, re.S):
        lines = block.splitlines()
        for node in ast.parse(block).body:
            first = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
            code = "\n".join(lines[first - 1:node.end_lineno])
            (defs if isinstance(node, ast.FunctionDef) else calls).append(code)
    assert len(defs) == 4 and calls
    (tmp_path / "readme_tasks.py").write_text(
        "import os\n\nimport litejobs\n\napp = litejobs.App(os.environ['LITEJOBS_TEST_DB'])\n\n"
        + "\n\n".join(defs) + "\n")
    (tmp_path / "driver.py").write_text(
        "import litejobs\nfrom readme_tasks import *\n\n" + "\n".join(calls) + "\n")
    db = tmp_path / "readme.db"
    env = clean_env(db)
    subprocess.run([sys.executable, "-c", "import readme_tasks; readme_tasks.app.stats()"],
                   cwd=tmp_path, env=env, check=True, timeout=60)  # the file exists first
    log_path = tmp_path / "supervisor.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "litejobs", "run", "--app", "readme_tasks:app",
             "--workers", "2"], cwd=tmp_path, env=env, stdin=subprocess.DEVNULL,
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    sup = SupervisorProcess(proc, log_path, 0.0)
    try:
        out = subprocess.run([sys.executable, "driver.py"], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr + sup.output()
        lines = out.stdout.splitlines()
        assert lines[0] in ("1 running", "1 succeeded")  # read right after enqueue
        fetch, total = "readme_tasks.fetch", "readme_tasks.total"
        assert lines[1:] == ["35", str([(1, fetch, "succeeded"), (2, fetch, "succeeded"),
                                        (3, total, "succeeded")]),
                             "35", "35", "published 17"]
    finally:
        sup.kill_group()
