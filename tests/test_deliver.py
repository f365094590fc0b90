"""app.deliver: HTTP deliveries under a real `litejobs run`, to a real receiver on 127.0.0.1.

The receiver (``Receiver``) is http.server in a thread: each path answers from a script (a
list of answers, the last one repeated), records every request with its arrival time, and
checks the Litejobs-Signature of each with ``litejobs.verify_signature``.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import litejobs
from litejobs.cli import main
from litejobs.config import load_config
from litejobs.errors import ConfigError
from litejobs.sending import parse_retry_after
from tests.conftest import APP_SPEC, launch_supervisor, wait_for

SECRET = "test-signing-secret"


@dataclass
class Seen:
    path: str
    method: str
    headers: dict[str, str]
    body: bytes
    at: float
    signed: bool


@dataclass
class Receiver:
    """Scripted answers per path: (status, headers, body, seconds to wait first)."""

    scripts: dict[str, list[tuple[int, dict[str, str], bytes, float]]] = field(
        default_factory=dict)
    seen: list[Seen] = field(default_factory=list)
    port: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def requests(self, path: str) -> list[Seen]:
        with self.lock:
            return [s for s in self.seen if s.path == path]

    def answer(self, path: str, body: bytes) -> tuple[int, dict[str, str], bytes, float]:
        with self.lock:
            script = self.scripts.get(path, [(404, {}, b"no such path", 0.0)])
            n = sum(1 for s in self.seen if s.path == path)
            self.seen.append(Seen(path, "", {}, body, time.time(), False))
            return script[min(n, len(script) - 1)]


def make_handler(rx: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def handle_any(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            status, headers, answer, wait = rx.answer(self.path, body)
            with rx.lock:  # complete the record made when the request arrived
                seen = [s for s in rx.seen if s.path == self.path][-1]
                seen.method = self.command
                seen.headers = {k.lower(): v for k, v in self.headers.items()}
                seen.signed = litejobs.verify_signature(
                    SECRET, self.headers.get("Litejobs-Signature"), body)
            if wait:
                time.sleep(wait)
            try:
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (a timeout being tested)

        do_GET = do_POST = do_PUT = do_DELETE = handle_any

    return Handler


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rx = Receiver()
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(rx))
    server.daemon_threads = True
    rx.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield rx
    server.shutdown()
    server.server_close()


def write_config(tmp_path: Path, http: str) -> Path:
    path = tmp_path / "litejobs.toml"
    path.write_text(f"[http]\n{http}\n")
    return path


@pytest.fixture
def run_here(tmp_path: Path, db_path: Path) -> Iterator[Any]:
    """Start `litejobs run` in tmp_path, so it and its workers read tmp_path/litejobs.toml."""
    started: list[Any] = []

    def start() -> Any:
        cmd = [sys.executable, "-m", "litejobs", "run", "--app", APP_SPEC, "--workers", "2"]
        sup = launch_supervisor(cmd, tmp_path, db_path, tmp_path / f"run-{len(started)}.log")
        started.append(sup)
        return sup

    yield start
    for sup in started:
        sup.kill_group()


def app_for(db_path: Path, config: Path) -> litejobs.App:
    return litejobs.App(db_path, config=load_config(str(config), env={}))


def ended(app: litejobs.App, job_id: int, timeout: float = 30) -> Any:
    return wait_for(lambda: (j := app.get_job(job_id)) is not None and
                    j.state.value in ("succeeded", "failed") and j, timeout,
                    f"job {job_id} to end")


# --- under a real supervisor -------------------------------------------------------------------


def test_retries_then_succeeds_signed_with_callback(tmp_path: Path, db_path: Path,
                                                    receiver: Receiver, run_here: Any) -> None:
    """500, a timeout, 429 with Retry-After: 1, then 200: four attempts, the last one after
    the second the receiver asked for; every request signed; the callback gets the summary."""
    cfg = write_config(tmp_path, f'signing_secret = "{SECRET}"')
    receiver.scripts["/hook"] = [
        (500, {}, b"oops", 0.0),
        (200, {}, b"too late", 2.5),  # the delivery's timeout is 1 s
        (429, {"Retry-After": "1"}, b"slow down", 0.0),
        (200, {"Content-Type": "application/json", "X-Reply": "yes"}, b'{"ok": true}', 0.0),
    ]
    receiver.scripts["/cb"] = [(204, {}, b"", 0.0)]
    app = app_for(db_path, cfg)
    run_here()
    job = app.deliver(receiver.url("/hook"), json={"order": 42, "name": "été"}, timeout=1,
                      headers={"Authorization": "Bearer abc"}, callback=receiver.url("/cb"))
    done = ended(app, job.id, 60)
    assert done.state.value == "succeeded", done.error
    assert done.attempt == 4
    result = done.result()
    assert result["status"] == 200 and result["body"] == '{"ok": true}'
    assert result["headers"]["x-reply"] == "yes"
    hits = receiver.requests("/hook")
    assert len(hits) == 4
    assert all(h.signed for h in hits), [h.headers.get("litejobs-signature") for h in hits]
    assert json.loads(hits[0].body) == {"order": 42, "name": "été"}
    assert hits[0].headers["content-type"] == "application/json"
    assert hits[0].headers["authorization"] == "Bearer abc"
    assert [h.headers["litejobs-attempt"] for h in hits] == ["1", "2", "3", "4"]
    gap = hits[3].at - hits[2].at
    # Retry-After: 1, where the job's own back-off before a 4th attempt is 2..4 s
    assert 1.0 <= gap < 2.0, gap  # without it, at least 2 s
    cb = wait_for(lambda: receiver.requests("/cb"), 30, "the callback")
    summary = json.loads(cb[0].body)
    assert summary["job"] == job.id and summary["state"] == "succeeded"
    assert summary["status"] == 200 and summary["attempts"] == 4
    assert summary["url"] == receiver.url("/hook") and summary["result"]["body"] == '{"ok": true}'
    assert cb[0].signed


def test_404_fails_at_once_is_a_dead_letter_and_retry_republishes(
        tmp_path: Path, db_path: Path, receiver: Receiver, run_here: Any) -> None:
    cfg = write_config(tmp_path, f'signing_secret = "{SECRET}"')
    receiver.scripts["/gone"] = [(404, {}, b"no such order", 0.0), (200, {}, b"found", 0.0)]
    receiver.scripts["/failed"] = [(200, {}, b"", 0.0)]
    app = app_for(db_path, cfg)
    run_here()
    job = app.deliver(receiver.url("/gone"), body=b"\x00\xffraw", retries=5,
                      failure_callback=receiver.url("/failed"))
    done = ended(app, job.id)
    assert done.state.value == "failed" and done.attempt == 1
    assert "answered 404" in done.error and "no such order" in done.error
    assert receiver.requests("/gone")[0].body == b"\x00\xffraw"
    cb = wait_for(lambda: receiver.requests("/failed"), 30, "the failure callback")
    summary = json.loads(cb[0].body)
    assert summary["job"] == job.id and summary["state"] == "failed"
    assert summary["attempts"] == 1 and "404" in summary["error"]
    assert summary["status"] == 404
    # the dead-letter list
    runner = CliRunner()
    out = runner.invoke(main, ["jobs", "--database", str(db_path), "--task",
                               "litejobs.deliver", "--state", "failed", "--json"])
    assert out.exit_code == 0, out.output
    assert [j["id"] for j in json.loads(out.output)] == [job.id]
    # retry is republish: the same request goes again, and now succeeds
    out = runner.invoke(main, ["retry", "--database", str(db_path), str(job.id)])
    assert out.exit_code == 0, out.output
    app.ring()
    again = ended(app, job.id)
    assert again.state.value == "succeeded" and again.result()["body"] == "found"
    assert receiver.requests("/gone")[1].body == b"\x00\xffraw"


def test_redirects_same_host_followed_other_host_refused(
        tmp_path: Path, db_path: Path, receiver: Receiver, run_here: Any) -> None:
    cfg = write_config(tmp_path, "timeout = 5")
    receiver.scripts["/moved"] = [(307, {"Location": "/ok"}, b"", 0.0)]
    receiver.scripts["/away"] = [(302, {"Location": receiver.url("/ok", "localhost")}, b"",
                                  0.0)]
    receiver.scripts["/ok"] = [(200, {}, b"here", 0.0)]
    receiver.scripts["/big"] = [(200, {}, b"x" * 200_000, 0.0)]
    receiver.scripts["/down"] = [(503, {}, b"maintenance", 0.0)]
    receiver.scripts["/dead"] = [(200, {}, b"", 0.0)]
    receiver.scripts["/binary"] = [(200, {}, b"\xff\xfe\x00raw", 0.0)]
    app = app_for(db_path, cfg)
    run_here()
    same = app.deliver(receiver.url("/moved"), json=[1])
    away = app.deliver(receiver.url("/away"), json=[2])
    big = app.deliver(receiver.url("/big"), method="GET")
    down = app.deliver(receiver.url("/down"), json={}, retries=1,
                       failure_callback=receiver.url("/dead"))
    binary = app.deliver(receiver.url("/binary"), method="PUT", body="é")
    assert ended(app, same.id).result()["body"] == "here"
    refused = ended(app, away.id)
    assert refused.state.value == "failed" and refused.attempt == 1
    assert "another host" in refused.error and "follow_redirects" in refused.error
    assert [h.headers["host"] for h in receiver.requests("/ok")] == [f"127.0.0.1:{receiver.port}"]
    kept = ended(app, big.id).result()
    assert len(kept["body"]) == 64 * 1024 and kept["truncated"] is True
    # retries exhausted on 503s: failed after 2 attempts, and one failure callback
    gave_up = ended(app, down.id)
    assert gave_up.state.value == "failed" and gave_up.attempt == 2, gave_up.error
    assert "answered 503" in gave_up.error
    cb = wait_for(lambda: receiver.requests("/dead"), 30, "the failure callback")
    assert json.loads(cb[0].body)["attempts"] == 2 and len(receiver.requests("/down")) == 2
    assert json.loads(cb[0].body)["status"] == 503
    assert len(receiver.requests("/dead")) == 1
    # an answer that is not UTF-8 is kept as base64, flagged; no secret: no signature
    got = ended(app, binary.id).result()
    assert got["body_base64"] is True and base64.b64decode(got["body"]) == b"\xff\xfe\x00raw"
    sent = receiver.requests("/binary")[0]
    assert (sent.method, sent.body) == ("PUT", "é".encode())
    assert sent.headers["content-type"] == "text/plain; charset=utf-8"
    assert "litejobs-signature" not in sent.headers


def test_flow_control_options_reach_the_job(db_path: Path) -> None:
    app = litejobs.App(db_path)
    job = app.deliver("https://api.example.com/x", json={}, flow_key="api.example.com",
                      rate_limit="10/s", concurrency_limit=2, key="order-42", delay=60)
    row = app.store.get_job(job.id)
    assert (row["concurrency_key"], row["concurrency_limit"], row["flow_rate"],
            row["flow_period"]) == ("api.example.com", 2, 10, 1.0)
    assert row["state"] == "scheduled"
    # the key makes a second publish of the same message the same job
    again = app.deliver("https://api.example.com/x", json={}, key="order-42")
    assert again.id == job.id
    # headers (an Authorization, say) are hidden where the dashboard and the CLI show args
    assert app.tasks["litejobs.deliver"].redact == ("headers",)


def test_allowed_hosts_refused_in_the_worker_too(tmp_path: Path, db_path: Path,
                                                 receiver: Receiver, run_here: Any) -> None:
    """An app without the allow-list enqueues; the worker, under litejobs.toml's
    allowed_hosts, refuses at once. A callback it refuses is logged, the delivery stands."""
    write_config(tmp_path, 'allowed_hosts = ["127.0.0.1"]')
    receiver.scripts["/x"] = [(200, {}, b"", 0.0)]
    receiver.scripts["/ok"] = [(200, {}, b"fine", 0.0)]
    app = litejobs.App(db_path, config=load_config(None, env={}))  # no [http] here
    sup = run_here()
    job = app.deliver(receiver.url("/x", "localhost"), json={})
    done = ended(app, job.id)
    assert done.state.value == "failed" and done.attempt == 1
    assert "allowed_hosts" in done.error
    assert receiver.requests("/x") == []
    fine = app.deliver(receiver.url("/ok"), json={}, callback=receiver.url("/x", "localhost"))
    assert ended(app, fine.id).state.value == "succeeded"
    wait_for(lambda: "was not enqueued" in sup.output(), 10, "the refused callback's log line",
             details=sup.output)
    assert "not in [http] allowed_hosts" in sup.output()
    assert receiver.requests("/x") == [] and len(app.jobs(task="litejobs.deliver")) == 2


# --- at the door ---------------------------------------------------------------------------------


def test_allowed_hosts_refused_at_enqueue(tmp_path: Path, db_path: Path) -> None:
    cfg = write_config(tmp_path, 'allowed_hosts = ["api.example.com", "*.hooks.example"]')
    app = app_for(db_path, cfg)
    with pytest.raises(ValueError, match=r"not in \[http\] allowed_hosts"):
        app.deliver("http://169.254.169.254/latest/meta-data", json={})
    with pytest.raises(ValueError, match=r"callback .* allowed_hosts"):
        app.deliver("https://api.example.com/x", json={}, callback="http://127.0.0.1/cb")
    assert app.deliver("https://api.example.com/x", json={}).id > 0
    assert app.deliver("https://eu.hooks.example/x", json={}).id > 0
    assert app.stats()["states"]["queued"] == 2


@pytest.mark.parametrize(("kwargs", "fragment"), [
    ({"url": "ftp://example.com/x"}, "http:// or https://"),
    ({"url": "http:///nohost"}, "with a host"),
    ({"url": "https://user:pw@example.com/"}, "credentials"),
    ({"url": "https://example.com/a b"}, "spaces"),
    ({"url": "https://example.com:99999/"}, "not a URL"),
    ({"method": "BREW"}, "method must be one of"),
    ({"json": {}, "body": "x"}, "not both"),
    ({"body": 12}, "body must be str or bytes"),
    ({"json": {"x": {1, 2}}}, "json must be a JSON value"),
    ({"headers": {"X": 1}}, "str to str"),
    ({"headers": {"X": "a\r\nInjected: 1"}}, "line break"),
    ({"headers": {"Litejobs-Signature": "t=1,v1=00"}}, "set by litejobs"),
    ({"timeout": 0}, "timeout"),
    ({"retries": -1}, "retries"),
    ({"rate_limit": "fast"}, "rate"),
    ({"body": "x" * (2 * 1024 * 1024)}, "max_payload"),
])
def test_bad_arguments_get_one_clear_error(db_path: Path, kwargs: dict[str, Any],
                                           fragment: str) -> None:
    app = litejobs.App(db_path)
    call = {"url": "https://example.com/hook", **kwargs}
    with pytest.raises((ValueError, TypeError)) as info:
        app.deliver(**call)
    assert fragment in str(info.value), str(info.value)
    assert "\n" not in str(info.value)


def test_without_httpx_deliver_says_which_extra(db_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    import litejobs.deliver

    monkeypatch.setitem(sys.modules, "httpx", None)  # what an environment without it finds
    monkeypatch.setattr(litejobs.deliver, "_httpx_found", False)  # as in a fresh process
    app = litejobs.App(db_path)
    with pytest.raises(ImportError, match=r"pip install 'litejobs\[http\]'"):
        app.deliver("https://example.com/hook", json={})


def test_a_worker_without_httpx_fails_the_delivery_naming_the_extra(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from litejobs.deliver import DeliveryFailed
    from litejobs.httpconfig import HttpConfig
    from litejobs.sending import _send

    monkeypatch.setitem(sys.modules, "httpx", None)
    with pytest.raises(DeliveryFailed, match=r"pip install 'litejobs\[http\]'"):
        _send(HttpConfig(), "https://example.com/", "POST", {}, b"", 1.0)


def test_every_app_can_run_deliveries_without_importing_httpx(db_path: Path) -> None:
    assert "litejobs.deliver" in litejobs.App(db_path).tasks
    code = ("import sys, litejobs; app = litejobs.App(sys.argv[1]); "
            "assert 'litejobs.deliver' in app.tasks; "
            "app.deliver('https://example.com/hook', json={}); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'httpx'))")
    out = subprocess.run([sys.executable, "-c", code, str(db_path)], capture_output=True,
                         text=True, check=True, cwd=db_path.parent)
    assert out.stdout.strip() == "[]", out.stdout


def test_retry_after_seconds_and_http_dates() -> None:
    now = 1_700_000_000.0
    assert parse_retry_after("1", now) == 1.0
    assert parse_retry_after(" 120 ", now) == 120.0
    assert parse_retry_after("Tue, 14 Nov 2023 22:13:50 GMT", now) == 30.0
    assert parse_retry_after("Tue, 14 Nov 2023 22:00:00 GMT", now) == 0.0  # in the past
    assert parse_retry_after("99999999", now) == 86400.0
    for bad in (None, "", "soon", "-1", "1.5"):
        assert parse_retry_after(bad, now) is None


# --- [http] in litejobs.toml ------------------------------------------------------------------


def test_http_section_is_read_and_the_environment_wins(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, '\n'.join([
        'signing_secret = "from-file"', 'allowed_hosts = ["API.example.com", "*.x.org"]',
        'follow_redirects = "any"', 'max_response_bytes = "2MB"', "timeout = 10"]))
    http = load_config(str(cfg), env={}).http
    assert http.signing_secret == "from-file"
    assert http.allowed_hosts == ("api.example.com", "*.x.org")
    assert (http.follow_redirects, http.max_response_bytes, http.timeout) == (
        "any", 2_000_000, 10.0)
    assert "from-file" not in repr(http)
    env = {"LITEJOBS_SIGNING_SECRET": "from-env"}
    assert load_config(str(cfg), env=env).http.signing_secret == "from-env"
    assert load_config(None, env=env).http.signing_secret == "from-env"


@pytest.mark.parametrize(("body", "fragment"), [
    ("colour = 1", "key 'http.colour': unknown key"),
    ('allowed_hosts = "api.example.com"', "must be an array"),
    ('allowed_hosts = ["https://api.example.com/x"]', "is not a host name"),
    ('follow_redirects = "sometimes"', "must be one of"),
    ("signing_secret = 12", "non-empty string"),
    ("timeout = -1", "http.timeout"),
    ('max_response_bytes = "lots"', "max_response_bytes"),
])
def test_http_section_errors_name_file_line_and_key(tmp_path: Path, body: str,
                                                    fragment: str) -> None:
    cfg = write_config(tmp_path, body)
    with pytest.raises(ConfigError) as info:
        load_config(str(cfg), env={})
    assert f"{cfg}:2:" in str(info.value) and fragment in str(info.value), str(info.value)


def test_the_example_config_has_a_valid_http_section() -> None:
    example = Path(__file__).resolve().parent.parent / "litejobs.toml.example"
    http = load_config(str(example), env={}).http
    assert http.allowed_hosts == ("api.example.com", "*.hooks.example.com")
    assert http.follow_redirects == "same-host" and http.signing_secret is None
