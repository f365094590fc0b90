"""The dashboard's cron page lists stored entries (app.schedule) beside the decorator ones,
and "trigger now" works for them too."""

from __future__ import annotations

from pathlib import Path

import litejobs
from tests.web.test_jobs_pages import Board, words


def test_stored_entries_are_listed_and_triggered(tmp_path: Path) -> None:
    app = litejobs.App(tmp_path / "jobs.db")

    @app.task(name="c.report")
    def report(n: int) -> int:
        return n

    app.cron("0 7 * * *", name="declared")(report)
    app.schedule("digest-42", "0 8 * * 1-5", "c.report", args=[42], timezone="Europe/Berlin")
    board = Board(app)
    page = words(board.get("/cron").text)
    assert "declared" in page and "digest-42" in page
    assert "stored" in page and "Europe/Berlin" in page
    answer = board.post("/cron/digest-42/trigger")
    assert answer.status_code in (302, 303), answer.text[:300]
    (job,) = app.jobs(task="c.report")
    assert job.args == [42]
