"""The dashboard's own pages (overview, queues, cron, supervisors) in a real Chromium against
a real `litejobs serve` and a real supervisor, and its security: credentials, CSRF,
read-only, the bind rule, headers, what is never served."""

from __future__ import annotations

import base64
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from litejobs.cli import main
from tests.conftest import REPO, SupervisorProcess, alive, children, clean_env, one_line_error
from tests.web.helpers import Dashboard, screenshot, until

NO_CREDENTIALS = {"LITEJOBS_WEB_PASSWORD": None, "LITEJOBS_WEB_TOKEN": None}


def text_of(page: Any, selector: str) -> str:
    return str(page.locator(selector).inner_text())


# --- pages, in the browser -------------------------------------------------------------------


def test_overview_shows_counts_chart_and_queues(populated: SupervisorProcess, app: Any,
                                                serve: Callable[..., Dashboard],
                                                page: Any) -> None:
    board = serve()
    page.goto(board.url + "/")
    assert page.title() == "Overview · litejobs"
    cards = {s: text_of(page, f".card.state-{s} .value") for s in ("succeeded", "failed",
                                                                    "scheduled")}
    assert text_of(page, ".card.state-failed .name").lower() == "failed"
    assert cards == {"succeeded": "13", "failed": "1", "scheduled": "1"}, cards
    # the chart of the last hour has the minute's successes and the failure, drawn as bars
    # (a supervisor writes its figures about once a second: the page shows them as it polls)
    hour = page.locator("figure.chart").first
    until(lambda: "13 succeeded" in hour.inner_text() and "1 failed" in hour.inner_text(),
          15, "the chart to count the jobs")
    assert hour.locator("rect.succeeded").count() >= 1
    assert hour.locator("rect.failed").count() >= 1
    rows = page.locator("table.grid tbody tr")
    assert [r.split("\t")[0] for r in rows.all_inner_texts()] == ["default", "mail"]
    assert "1 supervisor running" in text_of(page, "p.foot")
    assert page.errors == []  # no script error, nothing the CSP refused
    screenshot(page, "overview")


def test_queues_pause_and_resume_through_the_browser(populated: SupervisorProcess, app: Any,
                                                     serve: Callable[..., Dashboard],
                                                     page: Any) -> None:
    board = serve()
    page.goto(board.url + "/queues")
    row = page.locator('tr[data-queue="default"]')
    assert "4" in row.locator("td").nth(2).inner_text()  # concurrency from litejobs.toml
    assert page.locator('tr[data-queue="mail"] td').nth(3).inner_text() == "10/s"
    row.get_by_role("button", name="Pause").click()
    until(lambda: app.store.queue_paused("default"), what="the queue paused in the file")
    until(lambda: "paused" in row.inner_text(), what="the page to show it paused")
    # a job enqueued now waits while the queue is paused
    job = app.enqueue("basic.add", [5, 5])
    screenshot(page, "queues")
    assert job.refresh().state == "queued"
    row.get_by_role("button", name="Resume").click()
    until(lambda: not app.store.queue_paused("default"), what="the queue resumed in the file")
    until(lambda: job.refresh().state == "succeeded", 30, "the waiting job to run")
    assert page.errors == []


def test_cron_lists_entries_and_trigger_now_makes_a_job(populated: SupervisorProcess,
                                                        app: Any,
                                                        serve: Callable[..., Dashboard],
                                                        page: Any) -> None:
    board = serve()
    page.goto(board.url + "/cron")
    row = page.locator('tr[data-entry="nightly-sum"]')
    text = row.inner_text()
    assert "0 3 * * *" in text and "basic.add" in text and "UTC" in text
    assert re.search(r"\d{4}-\d\d-\d\d 03:00:00", text), text  # the next fires
    before = {j.id for j in app.jobs(task="basic.add", limit=1000)}
    row.get_by_role("button", name="Trigger now").click()
    notice = page.locator("p.notice")
    until(lambda: notice.count() == 1, what="the trigger's notice")
    job_id = int(re.search(r"job (\d+)", notice.inner_text()).group(1))
    assert job_id not in before
    job = app.get_job(job_id)
    assert job is not None and job.task == "basic.add"
    until(lambda: job.refresh().state == "succeeded", 30, "the triggered job to run")
    assert job.result() == 3
    screenshot(page, "cron")


def test_supervisors_page_shows_a_running_job_without_reload(
        populated: SupervisorProcess, app: Any, serve: Callable[..., Dashboard],
        page: Any) -> None:
    board = serve()
    page.goto(board.url + "/supervisors")
    panel = page.locator("section.panel")
    assert panel.count() == 1
    assert f"pid {populated.pid}" in panel.inner_text()
    until(lambda: page.locator("tr[data-worker]").count() == 2, 15, "two workers listed")
    page.evaluate("window.notReloaded = true")
    job = app.enqueue("basic.slow", [20])
    link = page.locator(f'tr[data-worker] a[href$="/jobs/{job.id}"]')
    until(lambda: link.count() == 1, 20, "the running job to appear on the page")
    assert page.evaluate("window.notReloaded") is True  # htmx swapped it in: no reload
    row = page.locator("tr[data-worker]", has=page.locator(f'a[href$="/jobs/{job.id}"]'))
    assert "basic.slow" in row.inner_text() and "busy" in row.inner_text()
    screenshot(page, "supervisors")
    job.cancel()


@pytest.mark.sqlite_only("the polling is browser behaviour; the supervisors page test "
                         "polls the same PostgreSQL reads")
def test_polling_pauses_while_the_tab_is_hidden(populated: SupervisorProcess,
                                                serve: Callable[..., Dashboard],
                                                page: Any) -> None:
    board = serve()
    polls: list[str] = []
    page.on("request", lambda r: "/live/" in r.url and polls.append(r.url))
    page.goto(board.url + "/queues")
    # (Playwright delivers its events while it is called: wait_for_timeout, not sleep)
    until(lambda: page.wait_for_timeout(50) or polls, 10, "the page to poll")
    page.evaluate("""() => {
        Object.defineProperty(document, "hidden", {value: true, configurable: true});
        document.dispatchEvent(new Event("visibilitychange"));
    }""")
    page.wait_for_timeout(300)  # a poll already on its way may land
    seen = len(polls)
    page.wait_for_timeout(4500)  # two poll periods: nothing may be asked while hidden
    assert len(polls) == seen, polls
    page.evaluate("""() => {
        Object.defineProperty(document, "hidden", {value: false, configurable: true});
        document.dispatchEvent(new Event("visibilitychange"));
    }""")
    until(lambda: page.wait_for_timeout(50) or len(polls) > seen, 1.5,
          "a poll as soon as the tab shows again")


# --- refusals ----------------------------------------------------------------------------------


def test_serve_refuses_a_public_address_without_credentials(db_path: Path, app: Any) -> None:
    app.enqueue("basic.add", [1, 1])
    runner = CliRunner()
    for command in (["serve", "--database", str(db_path), "--bind", "0.0.0.0:8077"],
                    ["run", "--app", "tests.apps.basic:app", "--database", str(db_path),
                     "--serve", "0.0.0.0:8077"]):
        result = runner.invoke(main, command, env=NO_CREDENTIALS)
        line = one_line_error(result, "0.0.0.0", "LITEJOBS_WEB_PASSWORD", "LITEJOBS_WEB_TOKEN")
        assert result.exit_code == 2, line


def test_run_serve_on_a_port_in_use_is_refused_at_once(db_path: Path, app: Any) -> None:
    app.enqueue("basic.add", [1, 1])
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(main, ["run", "--app", "tests.apps.basic:app",
                                           "--database", str(db_path), "--serve",
                                           f"127.0.0.1:{port}"], env=NO_CREDENTIALS)
    one_line_error(result, f"cannot listen on 127.0.0.1:{port}", "another port")


def test_a_token_is_required_on_every_request(populated: SupervisorProcess,
                                             serve: Callable[..., Dashboard]) -> None:
    board = serve(env={"LITEJOBS_WEB_TOKEN": "s3cret-token"})
    for path in ("/", "/queues", "/static/litejobs.css", "/live/overview"):
        response = board.get(path)
        assert response.status_code == 401, path
        assert "s3cret" not in response.text
    assert board.get("/", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert board.get("/", headers={"Authorization": "Bearer s3cret-token"}).status_code == 200
    basic = base64.b64encode(b"litejobs:s3cret-token").decode()
    assert board.get("/", headers={"Authorization": f"Basic {basic}"}).status_code == 200
    assert "s3cret" not in board.output()


def test_a_password_is_basic_auth_for_user_litejobs(populated: SupervisorProcess,
                                                   serve: Callable[..., Dashboard]) -> None:
    board = serve(env={"LITEJOBS_WEB_PASSWORD": "pw"})
    response = board.get("/")
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Basic")
    assert board.get("/", auth=("litejobs", "pw")).status_code == 200
    assert board.get("/", auth=("admin", "pw")).status_code == 401
    assert board.get("/", auth=("litejobs", "nope")).status_code == 401


def test_a_post_without_the_csrf_token_is_refused(populated: SupervisorProcess, app: Any,
                                                 serve: Callable[..., Dashboard]) -> None:
    board = serve()
    for attempt in ({}, {"data": {"csrf": "0" * 64}}, {"headers": {"X-CSRF-Token": "bad"}}):
        response = board.post("/queues/default/pause", **attempt)
        assert response.status_code == 403, attempt
        assert "CSRF" in response.text
    assert board.post("/cron/nightly-sum/trigger").status_code == 403
    assert not app.store.queue_paused("default")
    token = board.csrf()
    assert board.post("/queues/default/pause", data={"csrf": token}).status_code == 303
    assert app.store.queue_paused("default")
    assert board.post("/queues/default/resume",
                      headers={"X-CSRF-Token": token}).status_code == 303
    assert not app.store.queue_paused("default")
    # the server's log names each action by method and path, nothing more
    assert "POST /queues/default/pause -> 303" in board.output()
    assert token not in board.output()


@pytest.mark.sqlite_only("read-only refuses in the app, before any store call")
def test_read_only_shows_no_actions_and_refuses_them(populated: SupervisorProcess, app: Any,
                                                    serve: Callable[..., Dashboard],
                                                    page: Any) -> None:
    board = serve("--read-only")
    for path in ("/queues", "/cron", "/"):
        page.goto(board.url + path)
        assert page.locator("button, form").count() == 0, path
        assert page.locator(".badge", has_text="read-only").count() == 1
    token = board.csrf()
    for path in ("/queues/default/pause", "/cron/nightly-sum/trigger"):
        response = board.post(path, data={"csrf": token})
        assert response.status_code == 403 and "read-only" in response.text, path
    assert not app.store.queue_paused("default")


def test_without_credentials_only_loopback_host_names_are_served(
        populated: SupervisorProcess, serve: Callable[..., Dashboard]) -> None:
    """A DNS-rebinding page (its own name pointed at 127.0.0.1) is refused: it could read
    the CSRF token as its own origin."""
    board = serve()
    port = board.url.rsplit(":", 1)[1]
    for host in ("evil.example", f"evil.example:{port}", "127.0.0.1.evil.example"):
        response = board.get("/", headers={"Host": host})
        assert response.status_code == 403, host
        assert "csrf" not in response.text.lower()
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", "localhost"):
        assert board.get("/", headers={"Host": host}).status_code == 200, host
    guarded = serve(env={"LITEJOBS_WEB_TOKEN": "t0ken"}, token="t0ken")
    assert guarded.get("/", headers={"Host": "jobs.example.com"}).status_code == 200


@pytest.mark.sqlite_only("its subject is the SQLite file beside the app: it must never be served")
def test_headers_and_what_is_never_served(populated: SupervisorProcess, db_path: Path,
                                          serve: Callable[..., Dashboard]) -> None:
    board = serve()
    page = board.get("/queues")
    assert page.status_code == 200
    assert page.headers["x-frame-options"] == "DENY"
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe" not in csp
    assert page.headers["cache-control"] == "no-store"
    assert page.headers["x-content-type-options"] == "nosniff"
    static = board.get("/static/htmx.min.js")
    assert static.status_code == 200 and "no-store" not in static.headers.get(
        "cache-control", "")
    for path in ("/static/../../../" + db_path.name, "/static/%2e%2e/%2e%2e/cli/serve.py",
                 "/" + db_path.name, str(db_path), "/static/../__init__.py"):
        response = board.get(path)
        assert response.status_code == 404, (path, response.status_code)
        assert b"SQLite format" not in response.content


def test_base_path_prefixes_every_link(populated: SupervisorProcess,
                                       serve: Callable[..., Dashboard]) -> None:
    board = serve("--base-path", "/ops/jobs/")
    assert board.url.endswith("/ops/jobs")
    page = board.get("/queues")
    assert page.status_code == 200
    links = [link for link in re.findall(r'(?:href|src|action|hx-get)="([^"]+)"', page.text)
             if link != "data:,"]  # the empty favicon
    assert links and all(link.startswith("/ops/jobs/") for link in links), links
    assert board.client.get(board.url.removesuffix("/ops/jobs") + "/queues").status_code == 404


def test_the_dashboard_mounts_in_another_asgi_app(app: Any) -> None:
    from starlette.applications import Starlette
    from starlette.routing import Mount
    from starlette.testclient import TestClient

    import litejobs.web

    app.enqueue("basic.add", [1, 2])
    host = Starlette(routes=[Mount("/admin/jobs", litejobs.web.asgi(app))])
    with TestClient(host) as client:
        page = client.get("/admin/jobs/queues")
        assert page.status_code == 200
        assert 'href="/admin/jobs/static/litejobs.css"' in page.text
        assert 'action="/admin/jobs/queues/default/pause"' in page.text
        assert client.get("/admin/jobs/static/litejobs.css").status_code == 200


def test_the_dashboard_runs_under_wsgi_through_a2wsgi(app: Any) -> None:
    """As docs/dashboard.md mounts it in Flask or Django: a2wsgi's ASGIMiddleware, the prefix
    given as base_path (Django) or as SCRIPT_NAME (a dispatcher, as Flask's)."""
    import io
    from wsgiref.util import setup_testing_defaults

    from a2wsgi import ASGIMiddleware

    import litejobs.web

    app.enqueue("basic.add", [1, 2])

    def call(wsgi: Any, script: str, path: str) -> tuple[str, str]:
        environ: dict[str, Any] = {"SCRIPT_NAME": script, "PATH_INFO": path,
                                   "wsgi.input": io.BytesIO()}
        setup_testing_defaults(environ)
        status: list[str] = []
        body = b"".join(wsgi(environ, lambda s, h, e=None: status.append(s)))
        return status[0], body.decode()

    django_style = ASGIMiddleware(litejobs.web.asgi(app, base_path="/admin/jobs"))
    status, body = call(django_style, "", "/admin/jobs/queues")
    assert status.startswith("200"), status
    assert 'action="/admin/jobs/queues/default/pause"' in body
    flask_style = ASGIMiddleware(litejobs.web.asgi(app))
    status, body = call(flask_style, "/admin/jobs", "/queues")
    assert status.startswith("200"), status
    assert 'href="/admin/jobs/static/litejobs.css"' in body


def test_accepted_connections_do_not_wait_for_nagle() -> None:
    """Connections the server accepts have TCP_NODELAY (asyncio sets it only for sockets
    made with IPPROTO_TCP): without it each poll on a keep-alive connection waited ~40 ms."""
    from litejobs.web.server import listen

    with listen("127.0.0.1", 0) as server, socket.create_connection(server.getsockname()):
        accepted, _ = server.accept()
        with accepted:
            assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0


# --- in the supervisor's care ------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_run_serve_keeps_the_dashboard_up_and_stops_it_on_exit(
        supervisor: Callable[..., SupervisorProcess], app: Any) -> None:
    import httpx

    port = free_port()
    sup = supervisor("--serve", f"127.0.0.1:{port}")
    url = f"http://127.0.0.1:{port}/queues"

    def answers() -> bool:
        try:
            return httpx.get(url, timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    until(answers, 30, "the dashboard of run --serve to answer")
    worker_pids = sup.worker_pids()
    web = [pid for pid in worker_pids if b"serve" in Path(f"/proc/{pid}/cmdline").read_bytes()]
    assert len(web) == 1, worker_pids
    os.kill(web[0], signal.SIGKILL)
    until(lambda: not alive(web[0]), 10, "the dashboard process to die")
    until(answers, 30, "the dashboard to be started again")
    again = [pid for pid in children(sup.pid)
             if b"serve" in Path(f"/proc/{pid}/cmdline").read_bytes()]
    assert len(again) == 1 and again != web
    assert "dashboard server" in sup.output()  # the restart is logged
    sup.send(signal.SIGTERM)
    assert sup.wait(30) == 0
    assert not alive(again[0])


def test_run_serve_dashboard_dies_with_a_killed_supervisor(
        supervisor: Callable[..., SupervisorProcess]) -> None:
    import httpx

    port = free_port()
    sup = supervisor("--serve", f"127.0.0.1:{port}")
    until(lambda: _answers(httpx, f"http://127.0.0.1:{port}/"), 30, "the dashboard to answer")
    web = [pid for pid in children(sup.pid)
           if b"serve" in Path(f"/proc/{pid}/cmdline").read_bytes()]
    assert len(web) == 1
    try:
        os.kill(sup.pid, signal.SIGKILL)  # the supervisor alone, not its group
        until(lambda: not alive(web[0]), 10, "the dashboard to die with its supervisor")
    finally:
        if alive(web[0]):  # its own session: the group kill at teardown would miss it
            os.kill(web[0], signal.SIGKILL)


def _answers(httpx: Any, url: str) -> bool:
    try:
        return bool(httpx.get(url, timeout=2).status_code == 200)
    except httpx.TransportError:
        return False


def test_serve_without_the_web_extra_says_what_to_install(db_path: Path, app: Any) -> None:
    app.enqueue("basic.add", [1, 1])
    code = ("import sys; sys.modules['uvicorn'] = None\n"
            "from litejobs.cli import main\n"
            f"main(['serve', '--database', {str(db_path)!r}])\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=clean_env(db_path),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "pip install 'litejobs[web]'" in lines[0], proc.stderr


@pytest.mark.parametrize("path", ["/healthz", "/metrics"])
def test_probes_are_served(populated: SupervisorProcess, serve: Callable[..., Dashboard],
                           path: str) -> None:
    import litejobs.web

    if litejobs.web._optional("litejobs.health" if path == "/healthz"
                              else "litejobs.metrics") is None:
        pytest.skip(f"{path}: its module has not landed")
    board = serve()
    response = board.get(path)
    assert response.status_code == 200, response.text
    if path == "/healthz":
        assert response.json()["ok"] is True
    else:
        assert response.headers["content-type"].startswith("text/plain")
