"""The jobs pages in a real Chromium against a real `litejobs serve` (and, for the live
progress, a real `litejobs run`): a filter with a text search, a bulk retry of everything
matching through the confirmation, and a job page whose progress moves without a reload.
Each saves its screenshot (docs/screenshots/jobs.png, job.png)."""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import litejobs
from litejobs.testing import run_until_idle
from tests.apps import webjobsapp
from tests.conftest import REPO, SupervisorProcess, launch_supervisor, wait_for
from tests.web.helpers import Dashboard, screenshot, until

APP_SPEC = "tests.apps.webjobsapp:app"


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    """The served app is this test's (its tasks: basic.*, web.login, web.stepper)."""
    path = tmp_path / "litejobs.toml"
    path.write_text(f'app = "{APP_SPEC}"\n[queues.mail]\nrate_limit = "10/s"\n')
    return path


@pytest.fixture
def app(db_path: Path) -> litejobs.App:
    return webjobsapp.make_app(db_path)


@pytest.fixture
def run_supervisor(tmp_path: Path, db_path: Path, config_file: Path,
                   ) -> Iterator[Callable[[], SupervisorProcess]]:
    started: list[SupervisorProcess] = []

    def start() -> SupervisorProcess:
        cmd = [sys.executable, "-m", "litejobs", "run", "--app", APP_SPEC, "--workers", "2",
               "--config", str(config_file)]
        sup = launch_supervisor(cmd, REPO, db_path, tmp_path / "run.log")
        started.append(sup)
        return sup

    yield start
    for sup in started:
        sup.kill_group()


def problems(page: Any) -> list[str]:
    """The page's console errors but a missing favicon's 404 (the files the jobs pages load
    are checked by their status)."""
    return [e for e in page.errors if "status of 404" not in e]


def history(app: litejobs.App) -> dict[str, list[int]]:
    """A list worth looking at: successes on two queues, tagged jobs, failures with two
    different errors, a scheduled one, a workflow; run for real in this process."""
    add, fail = app.tasks["basic.add"], app.tasks["basic.fail"]
    ok = [add.enqueue(i, i).id for i in range(8)]
    ok += [add.options(queue="mail", tags=["vip"]).enqueue(i, 1).id for i in range(3)]
    declined = [fail.options(tags=["payments"]).enqueue(f"card declined for order {7000 + i}")
                .id for i in range(4)]
    other = [fail.enqueue("timeout talking to the bank").id for _ in range(2)]
    run_until_idle(app)
    app.tasks["web.login"].enqueue("ada", password="hunter2")
    app.tasks["basic.add"].options(delay=3600).enqueue(1, 2)
    return {"ok": ok, "declined": declined, "other": other}


def test_filter_then_retry_everything_matching(app: litejobs.App, page: Any,
                                               serve: Callable[..., Dashboard]) -> None:
    made = history(app)
    board = serve()
    loaded: dict[str, int] = {}
    page.on("response", lambda r: loaded.__setitem__(r.url.rsplit("/", 1)[-1], r.status))
    page.goto(board.url + "/jobs")
    page.wait_for_selector("table.jobs")
    assert loaded["jobs.css"] == loaded["jobs.js"] == loaded["htmx.min.js"] == 200
    until(lambda: "match" in page.inner_text(".bulk-bar .count"), what="the lazy count")
    page.check("input[name=state][value=failed]")
    page.fill("input[name=text]", "declined")
    page.click("#filters button[type=submit]")
    page.wait_for_url(re.compile(r"/jobs\?"))
    assert "declined" not in page.url  # the text went in the POST body
    shown = [int(x) for x in page.eval_on_selector_all(
        "input[name=id]", "boxes => boxes.map(b => b.value)")]
    assert shown == sorted(made["declined"], reverse=True)
    until(lambda: "4 jobs match" in page.inner_text(".bulk-bar .count"), what="the count")
    page.click("text=Retry all…")
    page.wait_for_url(re.compile(r"/jobs/confirm\?"))
    assert "Retry 4 failed jobs matching" in " ".join(page.inner_text("main").split())
    late = app.tasks["basic.fail"].enqueue("card declined, too late").id
    run_until_idle(app)
    page.click("button:has-text('Retry them')")
    page.wait_for_url(re.compile(r"done=retried"))
    assert "4 job(s) retried" in page.inner_text(".notice")
    states = {i: app.get_job(i).state.value for i in made["declined"] + made["other"] + [late]}
    assert [states[i] for i in made["declined"]] == ["queued"] * 4
    assert [states[i] for i in made["other"] + [late]] == ["failed"] * 3
    assert problems(page) == []


@pytest.mark.sqlite_only("the checkboxes are client-side script; no store path")
def test_selection_buttons_follow_the_checkboxes(app: litejobs.App, page: Any,
                                                 serve: Callable[..., Dashboard]) -> None:
    made = history(app)
    board = serve()
    page.goto(board.url + "/jobs?state=failed")
    retry = page.locator("#bulk button[value=retry]")
    assert retry.is_disabled()
    page.check("#pick-all")
    assert retry.is_enabled()
    retry.click()
    page.wait_for_url(re.compile(r"done=retried"))
    assert "6 job(s) retried" in page.inner_text(".notice")
    assert all(app.get_job(i).state.value == "queued" for i in made["declined"] + made["other"])
    assert problems(page) == []


def test_job_page_progress_moves_without_a_reload(app: litejobs.App, page: Any,
                                                  tmp_path: Path,
                                                  serve: Callable[..., Dashboard],
                                                  run_supervisor: Callable[[], Any]) -> None:
    history(app)  # run in this process, before the supervisor starts
    gate = str(tmp_path / "gate")
    add, stepper = app.tasks["basic.add"], app.tasks["web.stepper"]
    flow = app.workflow("nightly import")
    fetch = flow.add(add.prepare(1, 1))
    parts = [flow.add(add.prepare(k, k), after=fetch) for k in range(2)]
    step = flow.add(stepper.prepare(gate, 2), after=parts)
    flow.add(add.prepare(9, 9), after=step)
    flow.enqueue()
    assert step.id is not None
    run_supervisor()
    board = serve()
    page.goto(f"{board.url}/jobs/{step.id}")
    page.evaluate("window.notReloaded = true")
    until(lambda: "step 1 of 2" in page.inner_text("#live"), 30, "progress 1 on the page")
    assert page.get_attribute(".progress-line progress", "value") == str(1 / 3)
    page.wait_for_selector("svg.graph .node-running.current")
    screenshot(page, "job")
    page.goto(f"{board.url}/jobs")  # the list, with the running step's progress bar
    page.wait_for_selector(f"tr:has(a[href$='/jobs/{step.id}']) progress")
    until(lambda: "match" in page.inner_text(".bulk-bar .count"), what="the lazy count")
    screenshot(page, "jobs")
    page.goto(f"{board.url}/jobs/{step.id}")
    page.evaluate("window.notReloaded = true")
    Path(f"{gate}.1").touch()
    until(lambda: "step 2 of 2" in page.inner_text("#live"), 30, "progress 2 on the page")
    assert '"step": 2' in page.inner_text("#live")  # the metadata, live too
    Path(f"{gate}.2").touch()
    until(lambda: "succeeded" in page.inner_text("#live .status"), 30, "the end on the page")
    assert page.evaluate("window.notReloaded") is True
    wait_for(lambda: page.get_attribute("#live", "hx-trigger") is None, 5,
             "the poll to stop once the job ended")
    assert problems(page) == []
