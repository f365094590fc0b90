"""The HTTP API (``litejobs serve --api``) over real HTTP: a real `litejobs serve` subprocess,
httpx as the client, a real supervisor running what was enqueued, a real SQLite file and a
real PostgreSQL (tests on ``db_path`` run on both stores: tests/web/conftest.py)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from litejobs.cli import main
from tests.conftest import (
    REPO,
    SupervisorProcess,
    clean_env,
    one_line_error,
    wait_for,
)
from tests.web.helpers import Dashboard

TOKENS = "first-token-0123456789,second-token-9876543210"
API_ENV = {"LITEJOBS_API_TOKEN": TOKENS}
FIRST, SECOND = TOKENS.split(",")
V1 = "/api/v1"


@pytest.fixture
def api(app: Any, serve: Callable[..., Dashboard]) -> Dashboard:
    """`litejobs serve --api` on the test database (made by a first enqueue), its client
    carrying the first token."""
    app.stats()  # the file exists: serve refuses a missing one
    return serve("--api", env=API_ENV, token=FIRST)


def error_of(response: Any, status: int, *fragments: str) -> str:
    """The JSON error of ``response``, checked: its status, one message with each fragment."""
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/json"), response.headers
    body = response.json()
    assert list(body) == ["error"] and isinstance(body["error"], str), body
    for fragment in fragments:
        assert fragment in body["error"], (fragment, body["error"])
    return str(body["error"])


# --- enqueue, run, read ------------------------------------------------------------------------


def test_a_job_enqueued_over_http_runs_and_shows_its_result(
        api: Dashboard, supervisor: Callable[..., SupervisorProcess]) -> None:
    created = api.post(f"{V1}/jobs", json={"task": "basic.add", "args": [2, 3],
                                           "tags": ["http"], "priority": 5})
    assert created.status_code == 201, created.text
    job = created.json()
    assert (job["task"], job["args"], job["state"], job["tags"], job["priority"]) == (
        "basic.add", [2, 3], "queued", ["http"], 5)
    sup = supervisor()
    shown = wait_for(lambda: (r := api.get(f"{V1}/jobs/{job['id']}").json())["state"]
                     == "succeeded" and r, 30, "the job to succeed", details=sup.output)
    assert shown["result"] == 5
    # the object of `litejobs show --json`: the job, its workflow facts and its attempts
    assert [a["outcome"] for a in shown["attempts"]] == ["succeeded"]
    assert {"run", "after", "downstream", "token"} <= set(shown)
    # a running job cannot be retried: 409 (basic.slow holds a worker long enough to ask)
    slow = api.post(f"{V1}/jobs", json={"task": "basic.slow", "args": [30]}).json()
    wait_for(lambda: api.get(f"{V1}/jobs/{slow['id']}").json()["state"] == "running", 30,
             "basic.slow to start", details=sup.output)
    error_of(api.post(f"{V1}/jobs/{slow['id']}/retry"), 409, "running",
             "only a failed or cancelled job can be retried")
    cancelled = api.post(f"{V1}/jobs/{slow['id']}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled"


def test_options_delay_run_at_queue_and_kwargs_are_taken(api: Dashboard, app: Any) -> None:
    r = api.post(f"{V1}/jobs", json={"task": "basic.add", "kwargs": {"a": 1, "b": 2},
                                     "delay": 3600, "queue": "mail"})
    assert r.status_code == 201, r.text
    job = app.get_job(r.json()["id"])
    assert (job.state.value, job.queue, job.kwargs) == ("scheduled", "mail", {"a": 1, "b": 2})
    r = api.post(f"{V1}/jobs", json={"task": "basic.add", "args": [1, 1],
                                     "run_at": "2099-01-01T00:00:00Z"})
    assert r.status_code == 201 and r.json()["run_at"].startswith("2099-01-01T00:00:00")


def test_a_retried_post_with_one_idempotency_key_makes_one_job(api: Dashboard,
                                                               app: Any) -> None:
    body = {"task": "basic.add", "args": [1, 2]}
    headers = {"Idempotency-Key": "order-7"}
    first = api.post(f"{V1}/jobs", json=body, headers=headers)
    again = api.post(f"{V1}/jobs", json=body, headers=headers)
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["id"] == again.json()["id"]
    assert first.json()["key"] == "order-7"
    # clients retrying at once, each on its own connection: still that one job
    answers: list[tuple[int, int]] = []

    def retry_client() -> None:
        r = api.client.post(api.url + f"{V1}/jobs", json=body,
                            headers={"Idempotency-Key": "order-8"})
        answers.append((r.status_code, r.json()["id"]))

    threads = [threading.Thread(target=retry_client) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(s for s, _ in answers) == [200] * 7 + [201], answers
    assert len({i for _, i in answers}) == 1, answers
    assert [j.key for j in app.jobs(task="basic.add")].count("order-8") == 1
    # the body's key is the same thing; a different header and key is a client's mistake
    same = api.post(f"{V1}/jobs", json={**body, "key": "order-7"})
    assert (same.status_code, same.json()["id"]) == (200, first.json()["id"])
    error_of(api.post(f"{V1}/jobs", json={**body, "key": "a"}, headers={"Idempotency-Key": "b"}),
             400, "Idempotency-Key", "differ")


def test_concurrent_enqueues_share_writes_and_a_bad_one_fails_alone(api: Dashboard,
                                                                   app: Any) -> None:
    """Requests that arrive together are written together (apibatch): every good one gets
    its own job, a bad one among them its own error, nothing else."""
    import httpx

    answers: list[tuple[int, int, Any]] = []

    def client(c: int) -> None:
        with httpx.Client(headers={"Authorization": f"Bearer {FIRST}"}, timeout=30) as http:
            for i in range(10):
                bad = i == 5
                body = {"task": "basic.nope" if bad else "basic.add", "args": [c, i]}
                r = http.post(api.url + f"{V1}/jobs", json=body)
                answers.append((c, i, (r.status_code, r.json())))

    threads = [threading.Thread(target=client, args=(c,)) for c in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(answers) == 80
    good = [a for c, i, a in answers if i != 5]  # 8 clients x 9 good requests
    assert {status for status, _ in good} == {201}
    assert {status for c, i, (status, _) in answers if i == 5} == {422}
    ids = {body["id"] for _, body in good}
    assert len(ids) == 72
    stored = {j.id: j.args for j in app.jobs(task="basic.add", limit=1000)}
    assert ids <= set(stored)
    assert {tuple(b["args"]) for _, b in good} == {tuple(stored[i]) for i in ids}


# --- the rules: tokens, errors, caps -------------------------------------------------------------


def test_a_token_is_required_and_any_configured_one_works(api: Dashboard) -> None:
    url = api.url + f"{V1}/jobs/1"
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic eDp5"},
                    {"Authorization": f"Bearer {FIRST}x"}):
        r = api.client.get(url, headers=headers) if headers else _bare(api).get(url)
        error_of(r, 401, "Authorization: Bearer", "LITEJOBS_API_TOKEN")
        assert r.headers["www-authenticate"].startswith("Bearer")
    r = _bare(api).get(url, headers={"Authorization": f"Bearer {SECOND}"})
    error_of(r, 404, "no job with id 1")


def _bare(board: Dashboard) -> Any:
    import httpx

    return httpx.Client(timeout=10)


def test_errors_are_json_with_a_message_that_says_what_to_do(api: Dashboard,
                                                             app: Any) -> None:
    jobs = f"{V1}/jobs"
    error_of(api.post(jobs, json={"task": "basic.nope"}), 422, "unknown task 'basic.nope'",
             "basic.add", "basic.slow")
    assert "litejobs.deliver" not in error_of(api.post(jobs, json={"task": "basic.nope"}), 422)
    error_of(api.post(jobs, json={"task": "litejobs.deliver", "kwargs": {"url": "http://x"}}),
             422, "built in", "/api/v1/publish")
    error_of(api.post(jobs, content=b'{"task": ', headers={"content-type": "application/json"}),
             400, "not valid JSON")
    error_of(api.post(jobs, json=[1, 2]), 400, "must be a JSON object")
    error_of(api.post(jobs, json={"task": "basic.add", "args": {"a": 1}}), 400,
             "'args' must be an array")
    error_of(api.post(jobs, json={"task": "basic.add", "priority": "high"}), 400, "'priority'")
    error_of(api.post(jobs, json={"task": "basic.add", "priority": True}), 400, "'priority'")
    error_of(api.post(jobs, json={"task": "basic.add", "retries": 9}), 400, "unknown field",
             "'retries'", "known: task")
    error_of(api.post(jobs, json={"task": "basic.add", "run_at": "tomorrow"}), 400, "run_at",
             "ISO 8601")
    error_of(api.post(jobs, content=b'{"task": "basic.add", "delay": NaN}'), 400,
             "not valid JSON")
    error_of(api.post(jobs, json={"task": 7}), 400, "'task' must be a task name")
    error_of(api.get(f"{V1}/jobs/999999"), 404, "no job with id 999999")
    error_of(api.post(f"{V1}/jobs/999999/cancel"), 404, "no job with id 999999")
    error_of(api.get(f"{V1}/nothing"), 404, "/api/v1")
    error_of(api.client.delete(api.url + f"{V1}/jobs/1"), 405, "DELETE")
    done = app.enqueue("basic.add", [1, 1])
    done.cancel()
    error_of(api.post(f"{V1}/jobs/{done.id}/cancel"), 409, "already ended cancelled")
    queued = app.enqueue("basic.add", [1, 1])
    error_of(api.post(f"{V1}/jobs/{queued.id}/retry"), 409, "is queued")


def test_a_body_over_the_payload_cap_gets_413_declared_or_chunked(api: Dashboard,
                                                                  app: Any) -> None:
    huge = json.dumps({"task": "basic.add", "args": ["x" * (app.max_payload + 20_000)]})
    error_of(api.post(f"{V1}/jobs", content=huge.encode()), 413, "max_payload")

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted while read
        data = huge.encode()
        for i in range(0, len(data), 64 * 1024):
            yield data[i:i + 64 * 1024]

    r = api.post(f"{V1}/jobs", content=chunks())
    error_of(r, 413, "max_payload")
    # arguments just over the cap inside a body under it: the enqueue's own check, 413 too
    over = {"task": "basic.add", "args": ["x" * (app.max_payload + 10)]}
    error_of(api.post(f"{V1}/jobs", json=over), 413, "max_payload")
    assert app.stats()["states"]["queued"] == 0


def test_cancel_retry_and_token_completion(api: Dashboard, app: Any) -> None:
    job = app.enqueue("basic.add", [1, 2], delay=3600)
    r = api.post(f"{V1}/jobs/{job.id}/cancel")
    assert (r.status_code, r.json()["state"]) == (200, "cancelled")
    r = api.post(f"{V1}/jobs/{job.id}/retry")
    assert (r.status_code, r.json()["state"]) == (200, "queued")
    token = app.create_token()
    r = api.post(f"{V1}/tokens/{token.id}/complete", json={"data": {"approved": True}})
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "succeeded" and r.json()["result"] == {"approved": True}
    error_of(api.post(f"{V1}/tokens/{token.id}/complete", json={"data": 1}), 409,
             "already completed")
    error_of(api.post(f"{V1}/tokens/{job.id}/complete", json={}), 404, "not a token")
    error_of(api.post(f"{V1}/tokens/424242/complete", json={}), 404, "no job with id 424242")
    error_of(api.post(f"{V1}/tokens/{token.id}/complete", json={"value": 1}), 400,
             "unknown field")


def test_read_only_serves_reads_and_refuses_writes(app: Any,
                                                   serve: Callable[..., Dashboard]) -> None:
    job = app.enqueue("basic.add", [1, 2])
    board = serve("--api", "--read-only", env=API_ENV, token=FIRST)
    assert board.get(f"{V1}/jobs/{job.id}").json()["state"] == "queued"
    error_of(board.post(f"{V1}/jobs", json={"task": "basic.add"}), 403, "read-only")
    error_of(board.post(f"{V1}/jobs/{job.id}/cancel"), 403, "read-only")
    assert app.get_job(job.id).state.value == "queued"


def test_the_api_needs_no_csrf_token_but_the_dashboard_still_does(
        app: Any, serve: Callable[..., Dashboard]) -> None:
    """The exemption is exactly /api/v1/: the API token opens neither a dashboard action nor
    its pages, even with the dashboard's own token set to something else."""
    app.stats()
    board = serve("--api", env={**API_ENV, "LITEJOBS_WEB_TOKEN": "dashboard-token"},
                  token=FIRST)
    assert board.post(f"{V1}/jobs", json={"task": "basic.add", "args": [1, 1]}
                      ).status_code == 201
    assert board.post("/queues/default/pause").status_code == 401
    assert board.get("/").status_code == 401
    dash = _bare(board)
    r = dash.post(board.url + "/queues/default/pause",
                  headers={"Authorization": "Bearer dashboard-token"})
    assert r.status_code == 403 and "CSRF" in r.text  # the dashboard token is no API token
    error_of(dash.post(board.url + f"{V1}/jobs", json={"task": "basic.add"},
                       headers={"Authorization": "Bearer dashboard-token"}), 401)


def test_no_argument_value_reaches_the_servers_log(api: Dashboard, app: Any) -> None:
    secret = "hunter2-do-not-log"
    assert api.post(f"{V1}/jobs", json={"task": "basic.add", "args": [secret, "x"]}
                    ).status_code == 201
    api.post(f"{V1}/jobs", json={"task": "basic.nope", "args": [secret]})
    api.post(f"{V1}/jobs", json={"task": "basic.add", "args": {secret: 1}})
    api.post(f"{V1}/jobs", content=f'{{"task": "{secret}'.encode())
    wait_for(lambda: api.output().count("POST /api/v1/jobs") >= 4, 10, "the log lines")
    assert secret not in api.output()
    assert "POST /api/v1/jobs -> 201" in api.output()


def test_serve_api_refuses_to_start_without_a_token_or_an_app(db_path: Path, app: Any,
                                                              tmp_path: Path) -> None:
    app.stats()
    runner = CliRunner()
    base = ["serve", "--api", "--database", str(db_path), "--bind", "127.0.0.1:0"]
    for env in ({"LITEJOBS_API_TOKEN": None}, {"LITEJOBS_API_TOKEN": " , "}):
        result = runner.invoke(main, [*base, "--app", "tests.apps.basic:app"], env=env)
        line = one_line_error(result, "LITEJOBS_API_TOKEN")
        assert result.exit_code == 2, line
    result = runner.invoke(main, ["run", "--app", "tests.apps.basic:app", "--database",
                                  str(db_path), "--serve", "127.0.0.1:0", "--api"],
                           env={"LITEJOBS_API_TOKEN": None})
    assert result.exit_code == 2
    one_line_error(result, "LITEJOBS_API_TOKEN")
    result = runner.invoke(main, base, env={**API_ENV, "LITEJOBS_APP": None},
                           catch_exceptions=False)
    assert result.exit_code == 2
    one_line_error(result, "--api needs the app")


# --- publish and schedules (helpers "deliver" and "schedules") ------------------------------------


def _needs(app: Any, name: str) -> None:
    if not hasattr(app, name):
        pytest.skip(f"app.{name} is not in this tree yet")


def test_schedules_are_added_listed_and_deleted(api: Dashboard, app: Any) -> None:
    _needs(app, "schedule")
    entry = {"name": "api-nightly", "schedule": "0 3 * * *", "task": "basic.add",
             "args": [1, 2], "timezone": "Europe/Paris"}
    r = api.post(f"{V1}/schedules", json=entry)
    assert r.status_code == 201, r.text
    listed = api.get(f"{V1}/schedules")
    assert listed.status_code == 200
    mine = [e for e in listed.json() if e["name"] == "api-nightly"]
    assert len(mine) == 1 and mine[0]["source"] == "stored", listed.json()
    toml = [e for e in listed.json() if e["name"] == "nightly-sum"]
    assert toml and toml[0]["source"] == "toml"
    error_of(api.post(f"{V1}/schedules", json={**entry, "name": "nightly-sum"}), 409,
             "nightly-sum")
    error_of(api.post(f"{V1}/schedules", json={**entry, "schedule": "61 * * * *"}), 422)
    error_of(api.post(f"{V1}/schedules", json={**entry, "task": "basic.nope"}), 422,
             "unknown task")
    assert api.client.delete(api.url + f"{V1}/schedules/api-nightly").status_code == 200
    error_of(api.client.delete(api.url + f"{V1}/schedules/api-nightly"), 404, "api-nightly")
    assert [e for e in api.get(f"{V1}/schedules").json() if e["name"] == "api-nightly"] == []


def test_publish_enqueues_a_delivery(api: Dashboard, app: Any) -> None:
    _needs(app, "deliver")
    r = api.post(f"{V1}/publish", json={"url": "http://127.0.0.1:9/hook", "json": {"id": 1},
                                        "retries": 2, "delay": 3600},
                 headers={"Idempotency-Key": "pub-1"})
    assert r.status_code == 201, r.text
    assert r.json()["task"] == "litejobs.deliver" and r.json()["state"] == "scheduled"
    again = api.post(f"{V1}/publish", json={"url": "http://127.0.0.1:9/hook"},
                     headers={"Idempotency-Key": "pub-1"})
    assert (again.status_code, again.json()["id"]) == (200, r.json()["id"])
    error_of(api.post(f"{V1}/publish", json={"json": {}}), 400, "'url' is required")
    error_of(api.post(f"{V1}/publish", json={"url": "http://a", "body": "x", "json": 1}), 400,
             "not both")


def test_run_serve_api_serves_the_api_beside_the_supervisor(tmp_path: Path, db_path: Path,
                                                            app: Any,
                                                            config_file: Path) -> None:
    """`litejobs run --serve ADDR --api`: the supervisor's child serves the API, with the
    token from the supervisor's environment, and what it enqueues runs."""
    import httpx

    app.stats()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log_path = tmp_path / "run-api.log"
    cmd = [sys.executable, "-m", "litejobs", "run", "--app", "tests.apps.basic:app",
           "--workers", "1", "--config", str(config_file), "--serve", f"127.0.0.1:{port}",
           "--api"]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, cwd=REPO, env=clean_env(db_path, **API_ENV),
                                stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    sup = SupervisorProcess(proc, log_path, time.monotonic())
    try:
        http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5,
                            headers={"Authorization": f"Bearer {SECOND}"})

        def enqueued() -> Any:
            try:
                r = http.post(f"{V1}/jobs", json={"task": "basic.add", "args": [20, 22]})
            except httpx.TransportError:
                return None
            return r

        r = wait_for(enqueued, 30, "run --serve --api to answer", details=sup.output)
        assert r.status_code == 201, r.text
        job_id = r.json()["id"]
        shown = wait_for(lambda: (j := http.get(f"{V1}/jobs/{job_id}").json())["state"]
                         == "succeeded" and j, 30, "the job to succeed", details=sup.output)
        assert shown["result"] == 42
        http.close()
    finally:
        sup.kill_group()


def test_the_api_mounts_in_another_asgi_app_and_under_a_base_path(
        app: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """``litejobs.web.asgi(app, api=True)`` in the caller's own app: the token from its
    environment, the paths below the mount (or the base path)."""
    from starlette.applications import Starlette
    from starlette.routing import Mount
    from starlette.testclient import TestClient

    import litejobs.web

    monkeypatch.setenv("LITEJOBS_API_TOKEN", TOKENS)
    monkeypatch.delenv("LITEJOBS_WEB_TOKEN", raising=False)
    monkeypatch.delenv("LITEJOBS_WEB_PASSWORD", raising=False)
    auth = {"Authorization": f"Bearer {FIRST}"}
    host = Starlette(routes=[Mount("/admin/jobs", litejobs.web.asgi(app, api=True))])
    with TestClient(host) as client:
        r = client.post(f"/admin/jobs{V1}/jobs", json={"task": "basic.add", "args": [1, 2]},
                        headers=auth)
        assert r.status_code == 201, r.text
        assert client.get(f"/admin/jobs{V1}/jobs/{r.json()['id']}", headers=auth
                          ).json()["args"] == [1, 2]
        error_of(client.get(f"/admin/jobs{V1}/jobs/1"), 401)
    based = litejobs.web.asgi(app, api=True, base_path="/jobs")
    with TestClient(based) as client:
        r = client.post(f"/jobs{V1}/jobs", json={"task": "basic.add", "args": [3, 4]},
                        headers=auth)
        assert r.status_code == 201, r.text
    monkeypatch.delenv("LITEJOBS_API_TOKEN")
    with pytest.raises(litejobs.ConfigError, match="LITEJOBS_API_TOKEN"):
        litejobs.web.asgi(app, api=True)
