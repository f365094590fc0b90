"""examples/fastapi end to end: `litejobs run -- uvicorn web:app` (one supervisor for the whole
app) on a database in tmp_path, driven over HTTP: async routes that enqueue with `aenqueue`,
a file processed with a progress bar, a newsletter under the mail queue's rate limit, the
daily report and the catalog sync (an async task, against a local outside API) triggered from
the CLI, a signed webhook answered at once and handled by a job; then SIGTERM drains both.
Also the example's in-process tests (TestClient), and docs/testing.md's FastAPI section being
exactly them. The tests are common.ShopTests'; this module says how the example is served."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import REPO
from tests.examples import common

pytest.importorskip("fastapi", reason="FastAPI is not installed (pip install 'litejobs[dev]')")


class TestFastapiExample(common.ShopTests):
    example = REPO / "examples" / "fastapi"
    title = "FastAPI"
    own_tests = 5

    @classmethod
    def server(cls, port: int) -> list[str]:
        return [str(common.BIN / "uvicorn"), "--host", "127.0.0.1", "--port", str(port),
                "--no-access-log", "web:app"]

    def post_upload(self, shop: common.Shop, name: str, content: bytes) -> httpx.Response:
        return shop.http.post("/uploads", params={"name": name}, content=content)

    def post_newsletter(self, shop: common.Shop, recipients: list[str]) -> httpx.Response:
        return shop.http.post("/newsletter", json={"subject": "News", "body": "hello",
                                                   "recipients": recipients})
