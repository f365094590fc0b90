"""`litejobs run --config FILE` hands FILE to its workers (LITEJOBS_CONFIG), so what they read
from it themselves (the [http] section: a delivery's allowed hosts and signing secret) comes
from the same file wherever they start, not from a litejobs.toml in their directory."""

from __future__ import annotations

import signal
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import launch_supervisor

APP = textwrap.dedent("""
    import os
    import litejobs

    app = litejobs.App(os.environ["LITEJOBS_TEST_DB"])


    @app.task(name="cfg.where")
    def where() -> str | None:
        return os.environ.get("LITEJOBS_CONFIG")
""")


def test_workers_read_the_config_file_the_supervisor_was_given(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    appdir = tmp_path / "app"
    appdir.mkdir()
    (appdir / "cfgapp.py").write_text(APP)
    elsewhere = tmp_path / "etc"
    elsewhere.mkdir()
    config = elsewhere / "jobs.toml"
    db = tmp_path / "jobs.db"
    config.write_text(f'app = "cfgapp:app"\ndatabase = "{db}"\nworkers = 1\n'
                      '[http]\nallowed_hosts = ["example.com"]\n')
    monkeypatch.setenv("LITEJOBS_TEST_DB", str(db))
    sys.path.insert(0, str(appdir))
    try:
        import cfgapp

        sup = launch_supervisor(
            [sys.executable, "-m", "litejobs", "run", "--config", str(config)],
            cwd=appdir, db=db, log_path=tmp_path / "run.log")
        try:
            job = cfgapp.where.enqueue()
            assert job.result(timeout=20) == str(config), sup.output()
        finally:
            sup.send(signal.SIGTERM)
            assert sup.wait(30) == 0, sup.output()
    finally:
        sys.path.remove(str(appdir))
        sys.modules.pop("cfgapp", None)
