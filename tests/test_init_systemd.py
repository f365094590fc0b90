"""``litejobs init --systemd``: a unit for `litejobs run`, filled from here, the config and
this interpreter; checked by `systemd-analyze verify` where the machine has it."""

from __future__ import annotations

import os
import pwd
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from litejobs.cli import main
from tests.conftest import one_line_error


def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """Sections -> key -> values (a key may repeat), comments and blank lines left out."""
    unit: dict[str, dict[str, list[str]]] = {}
    section: dict[str, list[str]] | None = None
    for line in text.splitlines():
        if not line.strip() or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            assert line.endswith("]"), line
            section = unit.setdefault(line[1:-1], {})
            continue
        assert section is not None, line
        key, sep, value = line.partition("=")
        assert sep, line
        section.setdefault(key, []).append(value)
    return unit


def invoke(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def verify(unit_text: str, tmp_path: Path) -> None:
    """`systemd-analyze verify` when installed; otherwise the parse alone stands."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        return
    unit = tmp_path / "litejobs-test.service"
    unit.write_text(unit_text)
    done = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr + done.stdout


@pytest.mark.parametrize("dirname", ["plain", "with space"])
def test_unit_runs_litejobs_here_as_this_user(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              dirname: str) -> None:
    here = tmp_path / dirname
    here.mkdir()
    monkeypatch.chdir(here)
    assert invoke("init", "--app", "tests.apps.basic:app").exit_code == 0
    toml = here / "litejobs.toml"
    toml.write_text(toml.read_text().replace("grace = 30", "grace = 90"))
    result = invoke("init", "--systemd")
    assert result.exit_code == 0, result.output
    unit = parse_unit(result.output)
    service = unit["Service"]
    assert service["User"] == [pwd.getpwuid(os.getuid()).pw_name]
    assert service["WorkingDirectory"] == [str(here)]
    assert "PYTHONUNBUFFERED=1" in service["Environment"]
    argv = shlex.split(service["ExecStart"][0])
    assert argv[0] == os.path.join(os.path.dirname(os.path.abspath(sys.executable)),
                                   "litejobs")
    assert os.access(argv[0], os.X_OK)
    assert argv[1:] == ["run", "--config", str(toml)]
    assert service["KillSignal"] == ["SIGTERM"]
    assert service["KillMode"] == ["mixed"]
    assert int(service["TimeoutStopSec"][0]) > 90  # longer than the config's grace
    assert service["Restart"] == ["on-failure"]
    assert unit["Install"]["WantedBy"] == ["multi-user.target"]
    assert (here / "litejobs.toml").read_text() == toml.read_text()  # nothing written
    verify(result.output, tmp_path)


def test_flags_reach_exec_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "jobs.toml").write_text('app = "tests.apps.basic:app"\n')
    result = invoke("init", "--systemd", "--config", "jobs.toml", "--database", "var/j.db",
                    "--app", "tests.apps.basic:app")
    assert result.exit_code == 0, result.output
    argv = shlex.split(parse_unit(result.output)["Service"]["ExecStart"][0])
    assert argv[1:] == ["run", "--config", str(tmp_path / "jobs.toml"), "--database",
                        str(tmp_path / "var" / "j.db"), "--app", "tests.apps.basic:app"]


def test_no_config_or_no_app_is_one_line(tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LITEJOBS_APP", raising=False)
    one_line_error(invoke("init", "--systemd"), "no litejobs.toml", "litejobs init")
    (tmp_path / "litejobs.toml").write_text("workers = 2\n")
    one_line_error(invoke("init", "--systemd"), "names no app", "app =")
    (tmp_path / "litejobs.toml").write_text("grace = -1\napp = 'x:y'\n")
    one_line_error(invoke("init", "--systemd"), "grace")
