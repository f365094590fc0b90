"""Until the PostgreSQL store is wired in, a postgresql:// database fails at once with one
clear line, wherever it is given, instead of being taken for a file path."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

import litejobs
from litejobs.cli import main
from litejobs.config import load_config
from litejobs.errors import ConfigError
from tests.conftest import one_line_error

URL = "postgresql://user@db.example/jobs"
LINE = "the PostgreSQL store is not available in this version: use a SQLite file path"


@pytest.mark.parametrize("url", [URL, "postgres://user@db.example/jobs"])
def test_app_refuses_a_postgres_url(url: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=LINE):
        litejobs.App(url)
    assert not list(tmp_path.iterdir())
    assert not Path("postgresql:").exists() and not Path("postgres:").exists()


def test_litejobs_toml_database_refused_with_its_line(tmp_path: Path) -> None:
    toml = tmp_path / "litejobs.toml"
    toml.write_text(f'workers = 2\ndatabase = "{URL}"\n')
    with pytest.raises(ConfigError) as caught:
        load_config(str(toml), env={})
    assert str(caught.value) == f"{toml}:2: key 'database': {LINE}"


def test_environment_variable_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="LITEJOBS_DATABASE") as caught:
        load_config(None, env={"LITEJOBS_DATABASE": URL})
    assert LINE in str(caught.value) and "\n" not in str(caught.value)


def test_cli_database_flag_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LITEJOBS_DATABASE", raising=False)
    monkeypatch.delenv("LITEJOBS_CONFIG", raising=False)
    result = CliRunner().invoke(main, ["stats", "--database", URL])
    one_line_error(result, LINE)
    assert not list(tmp_path.iterdir())


def test_file_paths_still_work(tmp_path: Path) -> None:
    app = litejobs.App(tmp_path / "postgresql.db")
    assert app.path == str(tmp_path / "postgresql.db")
