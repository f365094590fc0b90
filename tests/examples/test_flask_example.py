"""examples/flask end to end: `litejobs run -- gunicorn web:app` (one supervisor for the whole
app) on a database in tmp_path, driven over HTTP: a file processed with a progress bar, a
newsletter under the mail queue's rate limit, the daily report and the catalog sync triggered
from the CLI (the sync against a local outside API), a signed webhook answered at once and
handled by a job; then SIGTERM drains both. Also the example's in-process tests, and
docs/testing.md's Flask section being exactly them. The tests are common.ShopTests'; this
module says how the example is served."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import REPO
from tests.examples import common

pytest.importorskip("flask", reason="Flask is not installed (pip install 'litejobs[dev]')")


class TestFlaskExample(common.ShopTests):
    example = REPO / "examples" / "flask"
    title = "Flask"
    own_tests = 5

    @classmethod
    def server(cls, port: int) -> list[str]:
        common.gunicorn_installed()
        return [str(common.BIN / "gunicorn"), "--bind", f"127.0.0.1:{port}", "--workers", "2",
                "web:app"]

    def post_upload(self, shop: common.Shop, name: str, content: bytes) -> httpx.Response:
        return shop.http.post("/uploads", files={"file": (name, content)})

    def post_newsletter(self, shop: common.Shop, recipients: list[str]) -> httpx.Response:
        return shop.http.post("/newsletter", data={"subject": "News", "body": "hello",
                                                   "recipients": "\n".join(recipients)})
