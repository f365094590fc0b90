"""Small defects a new user (and the many-hosts test) found: each test here failed before its
fix."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

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
