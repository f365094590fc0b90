"""Small defects a new user (and the many-hosts test) found: each test here failed before its
fix."""

from __future__ import annotations

import importlib
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from litejobs import App
from litejobs.cli import main
from litejobs.config import Config, load_config
from tests.conftest import APP_SPEC, REPO, one_line_error


def test_run_with_nothing_after_the_dashes_is_one_line_and_runs_nothing(db_path: Path) -> None:
    # An empty `$WEB_CMD` in a Procfile: `litejobs run --` used to run without a web server.
    result = CliRunner().invoke(main, ["run", "--app", APP_SPEC, "--database", str(db_path),
                                       "--"])
    one_line_error(result, "no command after `--`")
    assert not db_path.exists()  # refused before the file was even opened


def test_init_says_to_edit_only_what_was_not_given_and_writes_the_defaults(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["init", "--app", "myapp:app", "--database",
                                       "var/jobs.db"])
    assert result.exit_code == 0, result.output
    assert "edit" not in result.output and "litejobs check" in result.output, result.output
    config = load_config(str(tmp_path / "litejobs.toml"), env={})
    assert (config.app, config.database) == ("myapp:app", str(tmp_path / "var" / "jobs.db"))
    # The file states the defaults README's litejobs.toml table gives: what runs without it.
    assert config.workers == Config().workers == 2
    readme = (REPO / "README.md").read_text()
    assert f"| `workers` | {config.workers} |" in readme

    result = CliRunner().invoke(main, ["init", "--force", "--database", "var/jobs.db"])
    assert "edit app =, then" in result.output, result.output
    result = CliRunner().invoke(main, ["init", "--force"])
    assert "edit app = and database =, then" in result.output, result.output


def _project(root: Path, task_options: str = "") -> Path:
    """myapp/ with an App, a tasks module and a web.py that imports the tasks both ways."""
    pkg = root / "myapp"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "jobs.py").write_text(f"from litejobs import App\napp = App({str(root / 'j.db')!r})\n")
    (pkg / "tasks.py").write_text(textwrap.dedent(f"""\
        from myapp.jobs import app

        @app.task{task_options}
        def send(to):
            return to
        """))
    (pkg / "web.py").write_text("import tasks\nimport myapp.tasks\nprint('started')\n")
    return pkg


@pytest.mark.parametrize("options", ["", "(name='mail.send')"])
def test_a_task_file_imported_under_two_module_names_is_refused_where_it_happens(
        tmp_path: Path, options: str) -> None:
    # `cd myapp && python web.py`: `tasks` and `myapp.tasks` both ran, and the worker used to
    # fail every job of `tasks.send` for good with "unknown task".
    pkg = _project(tmp_path, options)
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": f"{tmp_path}:{Path(__file__).parents[1]}"}
    done = subprocess.run([sys.executable, "web.py"], cwd=pkg, env=env, capture_output=True,
                          text=True, timeout=60)
    if options:  # an explicit name is the same whichever way the file was imported
        assert done.returncode == 0 and "started" in done.stdout, done.stderr
        return
    assert done.returncode != 0, done.stdout
    last = done.stderr.strip().splitlines()[-1]
    for fragment in ("'tasks.send'", "'myapp.tasks.send'", "imported twice under two module "
                     "names", "import it one way", "name="):
        assert fragment in last, last


def test_a_reloaded_task_module_says_it_ran_twice(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "reload_app_mod.py").write_text(
        f"from litejobs import App\napp = App({str(tmp_path / 'j.db')!r})\n")
    (tmp_path / "reloaded_tasks_mod.py").write_text(textwrap.dedent("""\
        from reload_app_mod import app

        @app.task
        def ping():
            return 1
        """))
    module = importlib.import_module("reloaded_tasks_mod")
    app: App = sys.modules["reload_app_mod"].app
    try:
        with pytest.raises(ValueError, match="reloaded_tasks_mod ran twice") as info:
            importlib.reload(module)
        assert "another name=" not in str(info.value)
    finally:
        sys.modules.pop("reloaded_tasks_mod", None)
        sys.modules.pop("reload_app_mod", None)
    # Two different functions under one name still get the old advice.
    with pytest.raises(ValueError, match="give one of them another name="):
        app.task(name="reloaded_tasks_mod.ping")(lambda: 2)

