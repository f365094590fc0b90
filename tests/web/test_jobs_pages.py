"""The jobs pages (`/jobs`, `/jobs/{id}`) through Starlette's TestClient, against real
database files whose jobs were enqueued and run for real (``litejobs.testing.run_until_idle``):
each filter, keyset pages (no job twice, none skipped), the bounded scan, bulk actions on a
selection and on everything matching (a job created after the confirmation is left alone),
CSRF and read-only refusals, redact, and the job page's parts."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from html import unescape
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

import litejobs
from litejobs.job import iso
from litejobs.redact import MASK
from litejobs.store.views import JobFilter
from litejobs.testing import run_until_idle
from tests.apps import webjobsapp

pytest.importorskip("starlette", reason="the web extra is not installed")
pytest.importorskip("httpx", reason="httpx (dev extra) is not installed")

from starlette.testclient import TestClient

from litejobs.web import asgi
from litejobs.web import jobs as jobs_module


class Board:
    """A TestClient on the dashboard of ``app``, with the page's CSRF token."""

    def __init__(self, app: litejobs.App, read_only: bool = False) -> None:
        self.app = app
        self.client = TestClient(asgi(app, read_only=read_only), follow_redirects=False)
        page = self.client.get("/jobs")
        match = re.search(r'"X-CSRF-Token": "([0-9a-f]+)"', page.text)
        assert match, page.text[:500]
        self.csrf = match.group(1)

    def get(self, path: str, **kw: Any) -> Any:
        return self.client.get(path, **kw)

    def post(self, path: str, data: Any = None, csrf: bool = True, **kw: Any) -> Any:
        fields = list(data.items()) if isinstance(data, dict) else list(data or [])
        if csrf:
            fields.append(("csrf", self.csrf))
        return self.client.post(path, content=_form(fields), headers={
            "content-type": "application/x-www-form-urlencoded"}, **kw)


def _form(fields: list[tuple[str, Any]]) -> str:
    from urllib.parse import urlencode

    return urlencode([(k, str(v)) for k, v in fields])


def words(html: str) -> str:
    """The page's text, tags stripped, spaces normalised."""
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", html)).split())


def ids_on(html: str) -> list[int]:
    """The job ids of a list page, in order (their checkboxes, else their links)."""
    found = re.findall(r'name="id" value="(\d+)"', html)
    if not found:
        found = re.findall(r'<td class="num"><a href="[^"]*/jobs/(\d+)">', html)
    return [int(i) for i in found]


def link(html: str, text: str) -> str | None:
    """The href of the link whose text starts with ``text``."""
    for href, label in re.findall(r'<a href="([^"]+)"[^>]*>([^<]+)</a>', html):
        if unescape(label).strip().startswith(text):
            return unescape(href)
    return None


@pytest.fixture
def app(db_path: Path) -> litejobs.App:
    return webjobsapp.make_app(db_path)


@pytest.fixture
def board(app: litejobs.App) -> Iterator[Board]:
    b = Board(app)
    yield b
    b.client.close()


def run(app: litejobs.App) -> None:
    run_until_idle(app)


# --- filters ---------------------------------------------------------------------------------


@pytest.fixture
def mixed(app: litejobs.App) -> dict[str, Any]:
    """Jobs of several tasks, states, queues and tags, a workflow and a text to find, made
    and run for real; created in two batches either side of ``middle``."""
    add, fail = app.tasks["basic.add"], app.tasks["basic.fail"]
    first = [add.enqueue(i, 1).id for i in range(6)]
    first += [fail.enqueue("card declined for order 7781").id]
    middle = time.time()
    while time.time() == middle:  # the next jobs are created strictly after `middle`
        pass
    second = [add.options(queue="mail", tags=["vip"]).enqueue(i, 2).id for i in range(3)]
    second += [fail.options(tags=["vip", "eu"]).enqueue("timeout talking to bank").id]
    run(app)
    pending = [add.enqueue(100, 1).id, add.options(delay=3600).enqueue(101, 1).id]
    flow = app.workflow("etl")
    a = flow.add(add.prepare(1, 1))
    b = flow.add(add.prepare(2, 2), after=a)
    flow.add(add.prepare(3, 3), after=[a, b])
    wf = flow.enqueue()
    return {"first": first, "second": second, "pending": pending, "middle": middle,
            "workflow": wf.id}


def expected(app: litejobs.App, keep: Any) -> list[int]:
    return [j.id for j in app.jobs(limit=10_000) if keep(j)]


@pytest.mark.parametrize("query, keep", [
    ("state=failed", lambda j: j.state.value == "failed"),
    ("state=failed&state=scheduled", lambda j: j.state.value in ("failed", "scheduled")),
    ("state=queued", lambda j: j.state.value == "queued"),
    ("task=basic.fail", lambda j: j.task == "basic.fail"),
    ("queue=mail", lambda j: j.queue == "mail"),
    ("tag=vip", lambda j: "vip" in j.tags),
    ("tag=eu&task=basic.fail", lambda j: "eu" in j.tags),
    ("state=succeeded&queue=default&task=basic.add",
     lambda j: j.state.value == "succeeded" and j.queue == "default" and j.task == "basic.add"),
])
def test_each_filter_shows_exactly_its_jobs(board: Board, mixed: dict[str, Any], query: str,
                                            keep: Any) -> None:
    page = board.get(f"/jobs?{query}")
    assert page.status_code == 200, page.text
    want = expected(board.app, keep)
    assert want, "the fixture makes at least one job of each kind"
    assert ids_on(page.text) == want


def test_workflow_and_time_filters(board: Board, mixed: dict[str, Any]) -> None:
    wf = mixed["workflow"]
    page = board.get(f"/jobs?workflow={wf}")
    assert ids_on(page.text) == expected(board.app, lambda j: j.workflow == wf)
    assert len(ids_on(page.text)) == 3
    middle = iso(mixed["middle"])
    before = board.get("/jobs", params={"until": middle})
    assert ids_on(before.text) == sorted(mixed["first"], reverse=True)
    after = board.get("/jobs", params={"since": middle})
    assert sorted(ids_on(after.text)) == sorted(mixed["second"] + mixed["pending"]
                                                + [j.id for j in board.app.jobs(workflow=wf)])
    both = board.get("/jobs", params={"since": middle, "task": "basic.fail"})
    assert ids_on(both.text) == [mixed["second"][-1]]
    recent = board.get("/jobs", params={"since": "1h"})
    assert len(ids_on(recent.text)) == len(board.app.jobs(limit=1000))


def test_bad_filters_get_one_clear_line(board: Board) -> None:
    for query, words in [("state=lost", "unknown state 'lost'; the states are"),
                         ("workflow=abc", "workflow 'abc' is not a run id"),
                         ("since=yesterday", "since 'yesterday' is neither a duration"),
                         ("search=nope", "this text search has expired")]:
        page = board.get(f"/jobs?{query}")
        assert page.status_code == 400
        errors = re.findall(r'<p class="error" role="alert">([^<]*)</p>', page.text)
        assert len(errors) == 1 and words in unescape(errors[0]), (query, errors)


def test_text_search_travels_in_the_body_not_the_url(board: Board,
                                                     mixed: dict[str, Any]) -> None:
    """The text may be an argument value: the form posts it, the link carries a random id,
    and what the server logs (method and path) never holds it."""
    answer = board.post("/jobs/search", {"text": "ORDER 7781", "state": "failed"})
    assert answer.status_code == 303
    location = answer.headers["location"]
    assert "7781" not in location and "ORDER" not in location
    query = parse_qs(urlsplit(location).query)
    assert query["state"] == ["failed"] and len(query["search"][0]) >= 12
    page = board.get(location)
    assert ids_on(page.text) == [mixed["first"][-1]]  # found in args, case-insensitive
    assert "7781" not in "".join(re.findall(r'href="([^"]*)"', page.text))
    by_error = board.get(board.post("/jobs/search", {"text": "ValueError"}).headers["location"])
    assert ids_on(by_error.text) == expected(board.app, lambda j: j.state.value == "failed")
    quoted = board.app.tasks["basic.fail"].enqueue('say "hi"').id
    found = board.get(board.post("/jobs/search", {"text": 'say "hi'}).headers["location"])
    assert ids_on(found.text) == [quoted]


def test_a_search_is_allowed_in_read_only_mode(app: litejobs.App,
                                               mixed: dict[str, Any]) -> None:
    ro = Board(app, read_only=True)
    answer = ro.post("/jobs/search", {"text": "bank"})
    assert answer.status_code == 303
    assert ids_on(ro.get(answer.headers["location"]).text) == [mixed["second"][-1]]


# --- pages -----------------------------------------------------------------------------------


def walk(board: Board, url: str) -> tuple[list[int], int]:
    """Follow "older" (and "continue") links from ``url``; every id seen, and the pages."""
    seen: list[int] = []
    pages = 0
    while url:
        page = board.get(url)
        assert page.status_code == 200
        seen += ids_on(page.text)
        pages += 1
        url = link(page.text, "older") or ""
        assert pages < 100
    return seen, pages


def test_keyset_pages_show_every_job_once(board: Board, app: litejobs.App) -> None:
    add = app.tasks["basic.add"]
    ids = [j.id for j in app.enqueue_many([add.prepare(i, 0) for i in range(137)])]
    app.enqueue_many([add.options(tags=["t"]).prepare(i, 0) for i in range(60)])
    seen, pages = walk(board, "/jobs?task=basic.add")
    everything = sorted(ids + [j.id for j in app.jobs(tag="t", limit=100)], reverse=True)
    assert seen == everything and pages == 4  # 50 + 50 + 50 + 47
    # a job enqueued while someone pages lands on the first page, not in the middle
    first = board.get("/jobs")
    older = link(first.text, "older")
    assert older is not None
    newest = add.enqueue(1, 1).id
    assert newest not in ids_on(board.get(older).text)
    tagged, _ = walk(board, "/jobs?tag=t")
    assert tagged == [j.id for j in app.jobs(tag="t", limit=100)]


def test_a_rare_match_is_searched_for_page_by_page(board: Board, app: litejobs.App,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """No index on task: a page looks at SCAN rows at most and says how far back it got."""
    monkeypatch.setattr(jobs_module, "SCAN", 40)
    add = app.tasks["basic.add"]
    rare = app.tasks["basic.fail"].enqueue("old").id
    app.enqueue_many([add.prepare(i, 0) for i in range(100)])
    page = board.get("/jobs?task=basic.fail")
    text = words(page.text)
    top = app.store.top_job_id()
    assert f"Searched back to job {top + 1 - 40} without filling the page" in text
    assert ids_on(page.text) == []
    seen, pages = walk(board, "/jobs?task=basic.fail")
    assert seen == [rare] and pages == 3  # 40 rows, 40 rows, then the rest (21 rows)
    # the store's own default bound: 50,000 rows
    assert app.store.job_page(JobFilter(task="basic.fail"), scan=50).searched_to is not None
    assert app.store.job_page(JobFilter(task="basic.fail")).rows[0]["id"] == rare


def test_rare_states_are_read_through_their_index(app: litejobs.App) -> None:
    """A running or queued job far back is found on the first page, with no scan bound."""
    add = app.tasks["basic.add"]
    old = add.enqueue(0, 0).id
    app.enqueue_many([add.prepare(i, 0) for i in range(300)])
    run(app)
    waiting = add.options(delay=3600).enqueue(0, 0).id
    page = app.store.job_page(JobFilter(states=("queued", "scheduled")), scan=10)
    assert [r["id"] for r in page.rows] == [waiting] and page.searched_to is None
    del old


# --- bulk actions --------------------------------------------------------------------------


def failed_jobs(app: litejobs.App, n: int, message: str = "boom") -> list[int]:
    fail = app.tasks["basic.fail"]
    ids = [fail.enqueue(message).id for _ in range(n)]
    run(app)
    assert all(app.get_job(i).state.value == "failed" for i in ids)
    return ids


def confirm_form(html: str) -> list[tuple[str, str]]:
    form = html[html.index('action="/jobs/act"'):]
    form = form[:form.index("</form>")]
    return [(unescape(k), unescape(v)) for k, v in
            re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', form)]


def test_retry_of_everything_matching_spares_jobs_made_after_the_count(
        board: Board, app: litejobs.App) -> None:
    declined = failed_jobs(app, 5, "card declined")
    other = failed_jobs(app, 2, "other")
    url = board.post("/jobs/search", {"text": "declined", "state": "failed"}).headers[
        "location"]
    confirm = board.get(url.replace("/jobs?", "/jobs/confirm?") + "&action=retry")
    assert confirm.status_code == 200
    text = words(confirm.text)
    assert "Retry 5 failed jobs matching" in text
    assert "text declined" in text
    late = failed_jobs(app, 1, "card declined")  # after the confirmation page was read
    fields = confirm_form(confirm.text)
    assert dict(fields)["action"] == "retry" and int(dict(fields)["upto"]) < late[0]
    done = board.post("/jobs/act", [f for f in fields if f[0] != "csrf"])
    assert done.status_code == 303
    assert "done=retried" in done.headers["location"] and "n=5" in done.headers["location"]
    states = {i: app.get_job(i).state.value for i in declined + other + late}
    assert [states[i] for i in declined] == ["queued"] * 5
    assert [states[i] for i in other + late] == ["failed"] * 3
    shown = board.get(done.headers["location"])
    assert "5 job(s) retried" in shown.text


def test_confirmation_counts_with_a_cap_and_narrows_states(board: Board, app: litejobs.App,
                                                           monkeypatch: pytest.MonkeyPatch,
                                                           ) -> None:
    monkeypatch.setattr(jobs_module, "COUNT_CAP", 3)
    failed_jobs(app, 5)
    text = words(board.get("/jobs/confirm?action=retry").text)
    assert "Retry more than 3 failed/cancelled jobs matching" in text
    queued = board.get("/jobs/confirm?action=retry&state=queued").text
    assert "None of the states this filter names can be retried" in unescape(queued)
    count = board.get("/jobs/count?task=basic.fail").text
    assert "more than 3 jobs match" in count


def test_bulk_actions_on_the_selection(board: Board, app: litejobs.App) -> None:
    failed = failed_jobs(app, 3)
    add = app.tasks["basic.add"]
    pending = [add.options(delay=3600).enqueue(i, 0).id for i in range(3)]
    done = board.post("/jobs/act", [("action", "retry"), ("id", failed[0]), ("id", failed[1]),
                                    ("id", pending[0])])
    assert done.status_code == 303 and "n=2" in done.headers["location"]
    assert [app.get_job(i).state.value for i in failed] == ["queued", "queued", "failed"]
    board.post("/jobs/act", [("action", "cancel"), ("id", pending[1]), ("id", failed[2])])
    assert app.get_job(pending[1]).state.value == "cancelled"
    assert app.get_job(failed[2]).state.value == "failed"  # not pending: left as it was
    board.post("/jobs/act", [("action", "delete"), ("id", pending[1]), ("id", pending[2])])
    assert app.get_job(pending[1]) is None
    assert app.get_job(pending[2]) is not None  # scheduled: not deleted
    nothing = board.post("/jobs/act", [("action", "retry")])
    assert nothing.status_code == 400 and "no job selected" in unescape(nothing.text)


def test_delete_and_cancel_of_everything_matching(board: Board, app: litejobs.App) -> None:
    add = app.tasks["basic.add"]
    later = [add.options(delay=3600, tags=["x"]).enqueue(i, 0).id for i in range(4)]
    keep = add.options(delay=3600).enqueue(9, 9).id
    confirm = board.get("/jobs/confirm?tag=x&action=cancel")
    board.post("/jobs/act", [f for f in confirm_form(confirm.text) if f[0] != "csrf"])
    assert [app.get_job(i).state.value for i in later] == ["cancelled"] * 4
    assert app.get_job(keep).state.value == "scheduled"
    confirm = board.get("/jobs/confirm?tag=x&action=delete")
    assert "Delete 4 succeeded/failed/cancelled jobs matching" in words(confirm.text)
    board.post("/jobs/act", [f for f in confirm_form(confirm.text) if f[0] != "csrf"])
    assert all(app.get_job(i) is None for i in later)


# --- refusals --------------------------------------------------------------------------------


def test_actions_without_the_csrf_token_are_refused(board: Board, app: litejobs.App) -> None:
    failed = failed_jobs(app, 1)
    for path, data in [("/jobs/act", [("action", "retry"), ("id", failed[0])]),
                       (f"/jobs/{failed[0]}/retry", [])]:
        answer = board.post(path, data, csrf=False)
        assert answer.status_code == 403, answer.text
        wrong = board.post(path, [*data, ("csrf", "0" * 64)], csrf=False)
        assert wrong.status_code == 403
    assert app.get_job(failed[0]).state.value == "failed"


def test_read_only_shows_no_action_and_refuses_them(app: litejobs.App) -> None:
    failed = failed_jobs(app, 1)
    ro = Board(app, read_only=True)
    listing = ro.get("/jobs").text
    assert ids_on(listing) == failed  # listed by their links: no checkbox
    assert 'name="id"' not in listing and "Retry all" not in listing
    assert "/retry" not in ro.get(f"/jobs/{failed[0]}").text
    for path, data in [("/jobs/act", [("action", "retry"), ("id", failed[0])]),
                       (f"/jobs/{failed[0]}/retry", []), (f"/jobs/{failed[0]}/cancel", [])]:
        assert ro.post(path, data).status_code == 403
    assert app.get_job(failed[0]).state.value == "failed"


# --- the job page --------------------------------------------------------------------------


def test_job_page_masks_redacted_arguments(board: Board, app: litejobs.App) -> None:
    login = app.tasks["web.login"]
    by_keyword = login.enqueue("ada", password="hunter2")
    by_position = login.enqueue("bob", "s3cret", True)
    for job, secret in ((by_keyword, "hunter2"), (by_position, "s3cret")):
        page = board.get(f"/jobs/{job.id}")
        assert page.status_code == 200
        assert secret not in page.text and MASK in page.text
        assert "masked: password" in page.text
        assert secret not in board.get(f"/jobs/{job.id}/live").text
    unknown = app.enqueue("elsewhere.login", kwargs={"password": "hunter2"})
    page = board.get(f"/jobs/{unknown.id}")
    assert "is not registered in the app this dashboard serves" in unescape(page.text)


def test_job_page_shows_attempts_result_and_why(board: Board, app: litejobs.App) -> None:
    picky = app.tasks["basic.picky"]
    failed = failed_jobs(app, 1, "card declined")[0]
    page = board.get(f"/jobs/{failed}").text
    assert "card declined" in page and "<details><summary>traceback</summary>" in page
    assert "ValueError" in page and 'class="why"' not in page  # ended: nothing to explain
    ok = app.tasks["basic.add"].enqueue(20, 22)
    run(app)
    assert ">42</pre>" in board.get(f"/jobs/{ok.id}").text
    queued = picky.options(delay=3600).enqueue("x")
    text = unescape(board.get(f"/jobs/{queued.id}").text)
    assert re.search(r'<p class="why">job \d+ \(basic.picky\): scheduled until .*a delay', text)
    missing = board.get("/jobs/99999")
    assert missing.status_code == 404 and "no job with id 99999" in missing.text


def test_live_part_polls_until_the_job_ends(board: Board, app: litejobs.App) -> None:
    job = app.tasks["basic.add"].enqueue(1, 2)
    live = board.get(f"/jobs/{job.id}/live").text
    assert 'hx-trigger="every 2s' in live
    run(app)
    live = board.get(f"/jobs/{job.id}/live").text
    assert "hx-trigger" not in live and "state-succeeded" in live


def test_job_page_retry_and_cancel(board: Board, app: litejobs.App) -> None:
    failed = failed_jobs(app, 1)[0]
    assert board.post(f"/jobs/{failed}/retry").status_code == 303
    assert app.get_job(failed).state.value == "queued"
    again = board.post(f"/jobs/{failed}/retry")
    assert again.status_code == 409 and "only a failed or cancelled job" in again.text
    assert board.post(f"/jobs/{failed}/cancel").status_code == 303
    assert app.get_job(failed).state.value == "cancelled"


def test_workflow_graph_links_every_step_by_state(board: Board, app: litejobs.App) -> None:
    add, fail = app.tasks["basic.add"], app.tasks["basic.fail"]
    flow = app.workflow("graph")
    a = flow.add(add.prepare(1, 1))
    b = flow.add(fail.prepare("x"), after=a)
    c = flow.add(add.prepare(2, 2), after=a)
    d = flow.add(add.prepare(3, 3), after=[b, c])
    flow.enqueue()
    run(app)
    ids = [int(s.id) for s in (a, b, c, d) if s.id is not None]
    page = board.get(f"/jobs/{ids[0]}").text
    svg = page[page.index("<svg class=\"graph\""):page.index("</svg>")]
    for job_id, state in zip(ids, ["succeeded", "failed", "succeeded", "cancelled"],
                             strict=True):
        assert re.search(rf'<a href="/jobs/{job_id}" class="node node-{state}', svg), job_id
    assert svg.count('class="edge') == 4  # a->b, a->c, b->d, c->d
    assert 'node-succeeded current' in svg
    xs = {int(i): int(x) for i, x in re.findall(
        r'/jobs/(\d+)" class="node[^"]*">\s*<title>[^<]*</title>\s*<rect x="(\d+)"', svg)}
    assert xs[ids[0]] < xs[ids[1]] == xs[ids[2]] < xs[ids[3]]  # layered by depth


def test_under_a_base_path_links_and_redirects_keep_it(app: litejobs.App) -> None:
    """Behind a proxy (`--base-path /ops`): every link, form and redirect of the jobs pages
    carries the prefix, and a read-only search still works there."""
    failed = failed_jobs(app, 2)
    for read_only in (False, True):
        client = TestClient(asgi(app, read_only=read_only, base_path="/ops"),
                            follow_redirects=False)
        page = client.get("/ops/jobs?state=failed")
        assert page.status_code == 200
        assert f'href="/ops/jobs/{failed[-1]}"' in page.text
        assert 'action="/ops/jobs/search"' in page.text
        assert ('action="/ops/jobs/act"' in page.text) is not read_only
        token = re.search(r'"X-CSRF-Token": "([0-9a-f]+)"', page.text)
        assert token is not None
        found = client.post("/ops/jobs/search", content=_form([
            ("text", "boom"), ("csrf", token.group(1))]), headers={
            "content-type": "application/x-www-form-urlencoded"})
        assert found.status_code == 303
        assert found.headers["location"].startswith("/ops/jobs?search=")
        assert ids_on(client.get(found.headers["location"]).text) == failed[::-1]
    waiting = app.tasks["basic.add"].options(delay=60).enqueue(1, 1)
    job_page = client.get(f"/ops/jobs/{waiting.id}").text
    assert "/ops/static/jobs.css" in job_page
    assert f'hx-get="/ops/jobs/{waiting.id}/live"' in job_page


def test_a_big_run_is_listed_not_drawn(board: Board, app: litejobs.App,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from litejobs.web import job as job_module

    monkeypatch.setattr(job_module, "GRAPH_STEPS", 3)
    add = app.tasks["basic.add"]
    flow = app.workflow("wide")
    first = flow.add(add.prepare(0, 0))
    for k in range(4):
        flow.add(add.prepare(k, k), after=first)
    run_ = flow.enqueue()
    assert first.id is not None
    page = board.get(f"/jobs/{first.id}").text
    assert "<svg" not in page and "5 steps: too many to draw here" in page
    assert f'href="/jobs?workflow={run_.id}"' in page


def test_a_deep_chain_is_laid_out_without_recursion() -> None:
    from litejobs.web.graph import layout

    steps = [{"id": i, "task": "t.step", "state": "succeeded", "continuation": None}
             for i in range(1, 3001)]
    edges = [(i, i + 1) for i in range(1, 3000)]
    graph = layout(steps, edges, current=1500)
    xs = [n.x for n in graph.nodes]
    assert xs == sorted(xs) and len(set(xs)) == 3000 and len(graph.edges) == 2999
    assert [n.id for n in graph.nodes if n.current] == [1500]
