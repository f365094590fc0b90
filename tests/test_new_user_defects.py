"""Small defects a new user (and the many-hosts test) found: each test here failed before its
fix."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from litejobs.cli import main
from tests.conftest import APP_SPEC, one_line_error


def test_run_with_nothing_after_the_dashes_is_one_line_and_runs_nothing(db_path: Path) -> None:
    # An empty `$WEB_CMD` in a Procfile: `litejobs run --` used to run without a web server.
    result = CliRunner().invoke(main, ["run", "--app", APP_SPEC, "--database", str(db_path),
                                       "--"])
    one_line_error(result, "no command after `--`")
    assert not db_path.exists()  # refused before the file was even opened
