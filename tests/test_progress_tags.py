"""Tags, progress and metadata (issue 12, items 5 and 6): tags stored with the job and found
by ``app.jobs(tag=...)`` and ``litejobs jobs --tag``; bad values refused at the door."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

import litejobs
from litejobs.cli import main


def _app(tmp_path: Path) -> tuple[litejobs.App, litejobs.Task[[int], int]]:
    app = litejobs.App(tmp_path / "jobs.db")

    @app.task
    def add(x: int) -> int:
        return x + 1

    return app, add


def test_tags_round_trip_and_filter_jobs_newest_first(tmp_path: Path) -> None:
    app, add = _app(tmp_path)
    a = add.options(tags=["user:7", "import"]).enqueue(1)
    b = add.enqueue(2)
    c = add.options(tags=["import", "import"]).enqueue(3)  # a repeated tag is kept once
    assert a.tags == ["user:7", "import"] and b.tags == [] and c.tags == ["import"]
    assert app.get_job(a.id).tags == ["user:7", "import"]  # type: ignore[union-attr]
    assert [j.id for j in app.jobs(tag="import")] == [c.id, a.id]
    assert [j.id for j in app.jobs(tag="user:7")] == [a.id]
    assert app.jobs(tag="nobody") == []
    assert [j.id for j in app.jobs()] == [c.id, b.id, a.id]
    assert [j.id for j in app.jobs(tag="import", limit=1)] == [c.id]
    assert [j.id for j in app.jobs(state="queued", task=add.name, queue="default",
                                   tag="import")] == [c.id, a.id]
    assert app.jobs(state="succeeded", tag="import") == []
    # no workflow exists yet, so none has jobs
    assert app.jobs(workflow="w1") == []
    with pytest.raises(ValueError, match="state must be one of"):
        app.jobs(state="done")


def test_enqueue_many_mixes_tagged_calls_with_a_bulk_run(tmp_path: Path) -> None:
    app, add = _app(tmp_path)
    calls = [add.prepare(i) for i in range(20)]
    calls.insert(10, add.options(tags=["mid"]).prepare(99))
    jobs = app.enqueue_many(calls)
    assert [j.args for j in jobs] == [list(c.args) for c in calls]
    assert [j.id for j in app.jobs(tag="mid")] == [jobs[10].id]
    assert jobs[10].tags == ["mid"] and jobs[11].tags == []
    assert len(app.jobs(limit=100)) == 21


@pytest.mark.parametrize(("tags", "message"), [
    ("import", "tags must be a list of strings"),
    ([""], "tag '' is not usable"),
    (["x" * 65], "1 to 64 characters"),
    (["a\nb"], "without control characters"),
    ([7], "tag 7 is not usable"),
    ([f"t{i}" for i in range(17)], "at most 16 tags, not 17"),
])
def test_bad_tags_are_refused_at_the_door(tmp_path: Path, tags: object, message: str) -> None:
    app, add = _app(tmp_path)
    with pytest.raises(ValueError, match=message):
        add.options(tags=tags).enqueue(1)  # type: ignore[arg-type]
    assert app.jobs() == []


def test_cli_jobs_filters_by_tag_and_json_has_tags_progress_metadata(tmp_path: Path) -> None:
    _, add = _app(tmp_path)
    a = add.options(tags=["blue"]).enqueue(1)
    add.enqueue(2)
    db = str(tmp_path / "jobs.db")
    runner = CliRunner()
    res = runner.invoke(main, ["jobs", "--database", db, "--tag", "blue", "--json"])
    assert res.exit_code == 0, res.output
    (item,) = json.loads(res.stdout)
    assert item["id"] == a.id and item["tags"] == ["blue"]
    assert item["progress"] is None and item["metadata"] == {}
    res = runner.invoke(main, ["show", "--database", db, str(a.id), "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["tags"] == ["blue"] and data["progress"] is None and data["metadata"] == {}
    res = runner.invoke(main, ["jobs", "--database", db, "--tag", "green"])
    assert res.exit_code == 0 and "no jobs" in res.stdout
