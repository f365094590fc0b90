"""What the Flask and FastAPI examples' end-to-end tests share: the example started as users
run it (`litejobs run -- <web server>`, one supervisor for the whole app), an outside API on a
local port, the CLI, and the checks of each use case over HTTP."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

import litejobs
from litejobs.signing import signature_header
from tests.conftest import REPO, SupervisorProcess, clean_env, wait_for

BIN = Path(sys.executable).parent
SECRET = "whsec-test"
PRODUCTS = [{"sku": "A-1", "name": "Teapot", "price": 2500},
            {"sku": "B-2", "name": "Cup", "price": 600}]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class OutsideApi:
    """The catalog's outside API: a local HTTP server counting the requests it answers."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                api.requests.append(self.path)
                body = json.dumps(PRODUCTS).encode()
                self.send_response(200 if self.path == "/products.json" else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/products.json"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Shop:
    """An example app running under `litejobs run -- <server>`: its HTTP client, its database
    and its supervisor."""

    def __init__(self, example: Path, tmp: Path, server: list[str], port: int,
                 api: OutsideApi) -> None:
        self.example = example
        self.db = tmp / "shop.db"
        self.api = api
        self.env = clean_env(self.db, LITEJOBS_DATABASE=str(self.db), WEBHOOK_SECRET=SECRET,
                             CATALOG_URL=api.url, HOME=str(tmp))  # HOME: gunicorn's ctl socket
        cmd = [sys.executable, "-m", "litejobs", "run", "--config",
               str(example / "litejobs.toml"), "--", *server]
        log = tmp / "supervisor.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(cmd, cwd=example, env=self.env, stdin=subprocess.DEVNULL,
                                    stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        self.sup = SupervisorProcess(proc, log, time.monotonic())
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10)
        self.jobs = litejobs.App(self.db)  # the test's own reader of the same file
        wait_for(self._up, 30, "the web server to answer", details=self.sup.output)

    def _up(self) -> bool:
        if not self.sup.running():
            pytest.fail(f"litejobs run exited with {self.sup.proc.returncode}:\n"
                        f"{self.sup.output()}", pytrace=False)
        try:
            return self.http.get("/").status_code == 200
        except httpx.TransportError:
            return False

    def cli(self, *args: str) -> str:
        """A litejobs command, run in the example's directory as a user would."""
        done = subprocess.run([sys.executable, "-m", "litejobs", *args, "--config",
                               str(self.example / "litejobs.toml")], cwd=self.example,
                              env=self.env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    def wait_json(self, path: str, what: str, timeout: float = 20) -> Any:
        """GET ``path`` until it answers 200 with a truthy JSON body; returns the body."""
        def look() -> Any:
            answer = self.http.get(path)
            return answer.json() if answer.status_code == 200 and answer.json() else None
        return wait_for(look, timeout, what, interval=0.05, details=self.sup.output)

    def stop(self) -> None:
        """SIGTERM, as systemd or Docker stops it: the server and the workers drain, exit 0."""
        self.sup.send(signal.SIGTERM)
        assert self.sup.wait(30) == 0, self.sup.output()

    def close(self) -> None:
        self.http.close()
        self.sup.kill_group()


def started(example: Path, tmp: Path, server: list[str], port: int) -> Iterator[Shop]:
    """The body of a module fixture: the example running until the module's tests end."""
    api = OutsideApi()
    shop = Shop(example, tmp, server, port, api)
    try:
        yield shop
    finally:
        shop.close()
        api.close()
        print(f"--- litejobs run (exit {shop.sup.proc.returncode}) ---\n{shop.sup.output()}")


# --- the use cases, checked the same way for both examples ------------------------------------


def check_upload(shop: Shop, answer: httpx.Response) -> None:
    """An uploaded file is processed by a job: its progress reaches 100% and the page shows
    the result."""
    assert answer.status_code == 202, answer.text
    job_id = answer.json()["job"]

    def done() -> Any:
        status = shop.http.get(f"/uploads/{job_id}.json").json()
        return status if status["state"] == "succeeded" else None

    status = wait_for(done, 30, "the file job to succeed", interval=0.05,
                      details=shop.sup.output)
    assert status["progress"] == 1.0 and status["message"] == "100% of 300 lines"
    assert status["result"]["lines"] == 300 and status["result"]["words"] == 1200
    page = shop.http.get(f"/uploads/{job_id}").text
    assert "300 lines, 1200 words" in page and 'value="1.0"' in page


def upload_text() -> bytes:
    return "".join(f"row {i} of data\n" for i in range(300)).encode()


def check_newsletter(shop: Shop, answer: httpx.Response, count: int) -> None:
    """Every email is sent, and no second of starts holds more than the queue's 5."""
    assert answer.status_code == 202, answer.text
    ids = answer.json()["jobs"]
    assert len(ids) == count
    outbox = shop.db.parent / "outbox"
    wait_for(lambda: outbox.is_dir() and len(list(outbox.iterdir())) == count, 30,
             f"{count} emails in the outbox", details=shop.sup.output)
    starts = sorted(a.started_at or 0.0 for i in ids
                    for a in shop.jobs.get_job(i).attempts())  # type: ignore[union-attr]
    assert len(starts) == count
    for first, sixth in zip(starts, starts[5:], strict=False):
        assert sixth - first >= 1.0, f"6 emails started within {sixth - first:.3f} s: {starts}"


def check_upload_in_a_browser(shop: Shop, tmp: Path) -> None:
    """The home page's upload form, in Chromium: it lands on the job's page, whose script
    polls the job and shows the result (the page is never reloaded by the test)."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright not installed")
    from tests.web.helpers import chromium_path

    path = chromium_path()
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("no Chromium found: .ci/run installs Debian's chromium")
        pytest.skip("no Chromium (apt-get install chromium, or set LITEJOBS_CHROMIUM)")
    upload = tmp / "browser-rows.txt"
    upload.write_bytes(upload_text())
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=path, headless=True,
                                    args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page()
            errors: list[str] = []
            page.on("console", lambda m: m.type == "error" and errors.append(m.text))
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(str(shop.http.base_url))
            page.set_input_files("#upload input[type=file]", str(upload))
            page.click("#upload button")
            page.wait_for_url(re.compile(r".*/uploads/\d+$"), timeout=15_000)
            page.wait_for_selector("text=300 lines, 1200 words", timeout=20_000)
            assert page.eval_on_selector("#bar", "bar => bar.value") == 1
            assert page.inner_text("#state") == "succeeded"
            assert errors == [], errors
        finally:
            browser.close()


def check_daily_report(shop: Shop) -> None:
    """`litejobs cron trigger` runs the daily report now; it lands on /reports."""
    day_before = datetime.now(UTC).date().isoformat()
    job_id = int(shop.cli("cron", "trigger", "daily_report").strip())
    reports = shop.wait_json("/reports", "the daily report")
    assert reports[0]["date"] in (day_before, datetime.now(UTC).date().isoformat())
    job = shop.jobs.get_job(job_id)
    assert job is not None and job.result(timeout=10) == reports[0]["date"]


def check_webhook(shop: Shop) -> None:
    """A signed webhook is answered 202 at once and handled by a job; a redelivery is the same
    job; a forged one is refused and enqueues nothing."""
    body = json.dumps({"id": "evt_7", "order": 7, "amount": 1250}).encode()
    headers = {"Litejobs-Signature": signature_header(SECRET, body),
               "Content-Type": "application/json"}
    began = time.monotonic()
    first = shop.http.post("/webhooks/payments", content=body, headers=headers)
    answered = time.monotonic() - began
    assert first.status_code == 202, first.text
    assert answered < 2.0, f"the webhook took {answered:.2f} s to answer"
    again = shop.http.post("/webhooks/payments", content=body, headers=headers)
    assert again.status_code == 202 and again.json()["job"] == first.json()["job"]
    forged = shop.http.post("/webhooks/payments", content=body.replace(b"1250", b"1"),
                            headers=headers)
    assert forged.status_code == 401
    [payment] = shop.wait_json("/payments", "the payment to be handled")
    assert payment == {"event": "evt_7", "order": 7, "amount": 1250,
                       "job": first.json()["job"]}
    assert len(shop.jobs.jobs(task="payments.handle")) == 1


def check_sync(shop: Shop) -> None:
    """The catalog sync, triggered now, fetches from the outside API."""
    shop.cli("cron", "trigger", "sync_catalog")
    catalog = shop.wait_json("/catalog", "the catalog sync")
    assert catalog["products"] == PRODUCTS
    # (its own schedule, every 15 minutes, may fire during the test too)
    assert shop.api.requests and set(shop.api.requests) == {"/products.json"}


def check_cron_listed(shop: Shop) -> None:
    names = {e["name"] for e in json.loads(shop.cli("cron", "list", "--json"))}
    assert {"daily_report", "sync_catalog"} <= names


def gunicorn_installed() -> None:
    if not (BIN / "gunicorn").exists():
        pytest.skip("gunicorn is not installed (pip install 'litejobs[dev]')")


def without_pytest_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items()
            if not k.startswith(("PYTEST_", "LITEJOBS_"))}


def run_example_tests(example: Path, tmp: Path, passed: int) -> None:
    """The example's own in-process tests (litejobs.testing and the framework's test client),
    run as its README says: pytest in the example's directory."""
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "--basetemp", str(tmp / "pytest"), "test_web.py"], cwd=example,
                          env=without_pytest_env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(rf"\b{passed} passed\b", done.stdout), done.stdout


def docs_section(title: str) -> str:
    """The python block of docs/testing.md's section ``title`` that names an example's test
    file in its first line."""
    text = (REPO / "docs" / "testing.md").read_text()
    section = text.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]
    for block in re.findall(r"```python\n(.*?)```", section, re.S):
        if block.startswith("# examples/"):
            return str(block)
    raise AssertionError(f"docs/testing.md's {title!r} section has no example test block")


# --- the suite both examples' modules run ------------------------------------------------------


class ShopTests:
    """The end-to-end tests of an example shop, in the order they run (SIGTERM drains the shop
    near the end). A module's subclass names the example and says how its web server starts
    and how its forms are posted."""

    example: Path
    #: docs/testing.md's section that shows the example's own tests.
    title: str
    #: How many of the example's own tests pass.
    own_tests: int

    @classmethod
    def server(cls, port: int) -> list[str]:
        """The web server's command line, serving on ``port``."""
        raise NotImplementedError

    def post_upload(self, shop: Shop, name: str, content: bytes) -> httpx.Response:
        raise NotImplementedError

    def post_newsletter(self, shop: Shop, recipients: list[str]) -> httpx.Response:
        """The newsletter (subject "News", body "hello") to ``recipients``."""
        raise NotImplementedError

    @pytest.fixture(scope="class")
    @classmethod
    def shop(cls, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shop]:
        port = free_port()
        yield from started(cls.example, tmp_path_factory.mktemp(cls.example.name),
                           cls.server(port), port)

    def test_a_file_is_processed_with_progress_and_the_page_shows_the_result(
            self, shop: Shop) -> None:
        check_upload(shop, self.post_upload(shop, "rows.txt", upload_text()))

    def test_the_upload_form_and_its_progress_page_in_a_browser(self, shop: Shop,
                                                               tmp_path: Path) -> None:
        check_upload_in_a_browser(shop, tmp_path)

    def test_a_newsletter_is_sent_never_faster_than_the_rate(self, shop: Shop) -> None:
        recipients = [f"reader{i}@example.com" for i in range(12)]
        check_newsletter(shop, self.post_newsletter(shop, recipients), len(recipients))

    def test_the_daily_report_runs_when_its_cron_entry_is_triggered(self, shop: Shop) -> None:
        check_cron_listed(shop)
        check_daily_report(shop)

    def test_a_webhook_is_answered_at_once_and_handled_by_a_job(self, shop: Shop) -> None:
        check_webhook(shop)

    def test_the_catalog_sync_reads_the_outside_api(self, shop: Shop) -> None:
        check_sync(shop)

    def test_sigterm_drains_the_server_and_the_workers(self, shop: Shop) -> None:
        shop.stop()

    def test_the_examples_own_tests_pass(self, tmp_path: Path) -> None:
        run_example_tests(self.example, tmp_path, passed=self.own_tests)

    def test_docs_testing_section_is_the_examples_test_file(self) -> None:
        assert docs_section(self.title) == (self.example / "test_web.py").read_text()
