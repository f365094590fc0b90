"""``@app.task(redact=[...])``: validated at decoration, and the arguments it names masked by
``litejobs.redact`` and by ``litejobs show`` / ``litejobs jobs`` (text and --json), whether
they were passed by keyword or by position. The stored job keeps them: the task gets them."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

import litejobs
from litejobs.cli import main
from litejobs.redact import MASK, mask, mask_args, masks
from litejobs.testing import run_until_idle

APP_FILE = Path(__file__).resolve().parent / "apps" / "redactapp.py"
APP_SPEC = f"{APP_FILE}:app"


@pytest.fixture
def secret_app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[litejobs.App]:
    monkeypatch.chdir(tmp_path)
    for var in ("LITEJOBS_DATABASE", "LITEJOBS_APP", "LITEJOBS_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("LITEJOBS_TEST_DB", str(tmp_path / "jobs.db"))
    sys.modules.pop("redactapp", None)
    sys.path.insert(0, str(APP_FILE.parent))
    try:
        import redactapp

        yield redactapp.app
    finally:
        sys.path.remove(str(APP_FILE.parent))
        sys.modules.pop("redactapp", None)


# --- validation at decoration ---------------------------------------------------------------


def test_redact_must_be_a_list_of_argument_names(tmp_path: Path) -> None:
    app = litejobs.App(tmp_path / "jobs.db")

    def login(user: str, password: str) -> None: ...

    with pytest.raises(TypeError, match=r"redact must be a list of argument names, e\.g\. "
                                        r"redact=\['password'\]"):
        app.task(redact="password")  # type: ignore[arg-type]  # a bare string: a classic
    with pytest.raises(ValueError, match="1 is not an argument name"):
        app.task(redact=[1])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="'pass word' is not an argument name"):
        app.task(redact=["pass word"])
    with pytest.raises(ValueError, match=r"redact names 'pasword', which is not an argument "
                                         r"of .*login.*; its arguments: user, password"):
        app.task(redact=["pasword"])(login)
    assert "tests.test_redact.login" not in str(list(app.tasks))  # nothing registered


def test_redact_is_kept_on_the_task(tmp_path: Path) -> None:
    app = litejobs.App(tmp_path / "jobs.db")

    @app.task(redact=["password", "password"])
    def login(user: str, password: str) -> None: ...

    @app.task(redact=["card"])  # **kwargs: any name may come
    def pay(amount: int, **details: str) -> None: ...

    @app.task
    def plain(x: int) -> None: ...

    assert login.redact == ("password",)
    assert pay.redact == ("card",)
    assert plain.redact == ()
    assert masks(app, login.name) == ("password",)
    assert masks(app, "elsewhere.task") is None


# --- masking ------------------------------------------------------------------------------


def test_mask_hides_keyword_and_positional_secrets_only(secret_app: litejobs.App) -> None:
    assert mask(secret_app, "secret.login", {"user": "ada", "password": "hunter2"}) == {
        "user": "ada", "password": MASK}
    assert mask_args(secret_app, "secret.login", ["ada", "hunter2", True]) == [
        "ada", MASK, True]
    assert mask(secret_app, "secret.pay", {"card": "4111", "cvc": "123", "note": "x"}) == {
        "card": MASK, "cvc": MASK, "note": "x"}
    # a task this process does not know: nothing can be masked
    assert mask(secret_app, "other.task", {"password": "p"}) == {"password": "p"}
    assert mask_args(secret_app, "other.task", ["p"]) == ["p"]


def test_the_task_still_gets_its_secrets(secret_app: litejobs.App) -> None:
    job = secret_app.tasks["secret.login"].enqueue("ada", password="hunter2")
    assert run_until_idle(secret_app).succeeded == 1
    assert job.result(timeout=5) == "ada:7"
    assert job.refresh().kwargs == {"password": "hunter2"}  # stored as given


# --- the CLI ---------------------------------------------------------------------------------


def _cli(*args: str) -> str:
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == 0, (result.output, result.exception)
    return result.output


def test_show_and_jobs_mask_with_the_app(secret_app: litejobs.App, tmp_path: Path) -> None:
    login = secret_app.tasks["secret.login"]
    by_keyword = login.enqueue("ada", password="hunter2").id
    by_position = login.enqueue("bob", "s3cret", True).id
    db = str(tmp_path / "jobs.db")

    data = json.loads(_cli("show", str(by_keyword), "--app", APP_SPEC, "--json"))
    assert data["kwargs"] == {"password": MASK} and data["args"] == ["ada"]
    data = json.loads(_cli("show", str(by_position), "--app", APP_SPEC, "--json"))
    assert data["args"] == ["bob", MASK, True]
    text = _cli("show", str(by_keyword), "--app", APP_SPEC)
    assert "hunter2" not in text and MASK in text
    listed = json.loads(_cli("jobs", "--app", APP_SPEC, "--json"))
    assert {j["id"] for j in listed} == {by_keyword, by_position}
    assert "hunter2" not in json.dumps(listed) and "s3cret" not in json.dumps(listed)
    # the same through LITEJOBS_APP, with --database given too
    out = CliRunner().invoke(main, ["show", str(by_keyword), "--database", db, "--json"],
                             env={"LITEJOBS_APP": APP_SPEC})
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)["kwargs"] == {"password": MASK}


def test_show_without_the_app_cannot_mask(secret_app: litejobs.App, tmp_path: Path) -> None:
    """Only the task's registration says what is secret: without an app nothing is masked;
    with an app that lacks the task, `show` says so."""
    job = secret_app.enqueue("elsewhere.login", kwargs={"password": "hunter2"})
    db = str(tmp_path / "jobs.db")
    assert json.loads(_cli("show", str(job.id), "--database", db, "--json"))["kwargs"] == {
        "password": "hunter2"}
    text = _cli("show", str(job.id), "--app", APP_SPEC)
    assert "task 'elsewhere.login' is not registered in the app" in text


def test_the_cli_masks_a_deliverys_headers_without_an_app(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    # Built-in tasks are known to every App: with no app configured, `show` and `jobs --json`
    # still hide what litejobs.deliver marks secret (an Authorization header).
    monkeypatch.chdir(tmp_path)
    for var in ("LITEJOBS_DATABASE", "LITEJOBS_APP", "LITEJOBS_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    db = str(tmp_path / "d.db")
    app = litejobs.App(db)
    job = app.deliver("http://127.0.0.1:9/hook", json={"n": 1},
                      headers={"Authorization": "Bearer s3cret"})
    runner = CliRunner()
    for args in (["show", str(job.id), "--database", db, "--json"],
                 ["show", str(job.id), "--database", db],
                 ["jobs", "--database", db, "--json"]):
        result = runner.invoke(main, args)
        assert result.exit_code == 0, result.output
        assert "s3cret" not in result.output, args
        assert "127.0.0.1:9/hook" in result.output  # the rest is shown
