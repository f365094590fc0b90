"""examples/fastapi end to end: `litejobs run -- uvicorn web:app` (one supervisor for the whole
app) on a database in tmp_path, driven over HTTP: async routes that enqueue with `aenqueue`,
a file processed with a progress bar, a newsletter under the mail queue's rate limit, the
daily report and the catalog sync (an async task, against a local outside API) triggered from
the CLI, a signed webhook answered at once and handled by a job; then SIGTERM drains both.
Also the example's in-process tests (TestClient), and docs/testing.md's FastAPI section being
exactly them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.examples import common

pytest.importorskip("fastapi", reason="FastAPI is not installed (pip install 'litejobs[dev]')")
EXAMPLE = REPO / "examples" / "fastapi"


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[common.Shop]:
    port = common.free_port()
    server = [str(common.BIN / "uvicorn"), "--host", "127.0.0.1", "--port", str(port),
              "--no-access-log", "web:app"]
    yield from common.started(EXAMPLE, tmp_path_factory.mktemp("fastapi"), server, port)


def test_a_file_is_processed_with_progress_and_the_page_shows_the_result(
        shop: common.Shop) -> None:
    answer = shop.http.post("/uploads", params={"name": "rows.txt"},
                            content=common.upload_text())
    common.check_upload(shop, answer)



def test_the_upload_form_and_its_progress_page_in_a_browser(shop: common.Shop,
                                                           tmp_path: Path) -> None:
    common.check_upload_in_a_browser(shop, tmp_path)

def test_a_newsletter_is_sent_never_faster_than_the_rate(shop: common.Shop) -> None:
    recipients = [f"reader{i}@example.com" for i in range(12)]
    answer = shop.http.post("/newsletter", json={"subject": "News", "body": "hello",
                                                 "recipients": recipients})
    common.check_newsletter(shop, answer, len(recipients))


def test_the_daily_report_runs_when_its_cron_entry_is_triggered(shop: common.Shop) -> None:
    common.check_cron_listed(shop)
    common.check_daily_report(shop)


def test_a_webhook_is_answered_at_once_and_handled_by_a_job(shop: common.Shop) -> None:
    common.check_webhook(shop)


def test_the_catalog_sync_reads_the_outside_api(shop: common.Shop) -> None:
    common.check_sync(shop)


def test_sigterm_drains_the_server_and_the_workers(shop: common.Shop) -> None:
    shop.stop()


def test_the_examples_own_tests_pass(tmp_path: Path) -> None:
    common.run_example_tests(EXAMPLE, tmp_path, passed=5)


def test_docs_testing_fastapi_section_is_the_examples_test_file() -> None:
    assert common.docs_section("FastAPI") == (EXAMPLE / "test_web.py").read_text()
