"""Configuration: value parsers, file validation with line numbers, and precedence."""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import pytest

import litejobs
from litejobs.config import (
    MAX_PAYLOAD,
    Config,
    QueueConfig,
    load_config,
    parse_duration,
    parse_rate,
    parse_size,
    render_template,
)


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


# --- parsers ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "seconds"), [
    (0, 0.0), (5, 5.0), (2.5, 2.5), ("90", 90.0), ("30s", 30.0), ("15m", 900.0),
    ("12h", 43200.0), ("7d", 604800.0), ("1w", 604800.0), ("500ms", 0.5), (" 1.5h ", 5400.0),
])
def test_parse_duration(value, seconds) -> None:
    assert parse_duration(value) == seconds


@pytest.mark.parametrize("value", [
    "abc", "5 years", "-5", "", "s", -1, -0.5, True, None, [], math.nan, math.inf, "1e3",
])
def test_parse_duration_refuses(value) -> None:
    with pytest.raises(ValueError, match="grace"):
        parse_duration(value, "grace")


@pytest.mark.parametrize(("value", "size"), [
    (0, 0), ("0", 0), (1234, 1234), ("100", 100), ("100b", 100), ("1kb", 1000),
    ("512MB", 512_000_000), ("2GB", 2_000_000_000), ("1KiB", 1024), ("1MiB", 1024**2),
    ("1GiB", 1024**3), ("1.5MB", 1_500_000), ("64k", 65536), ("512m", 512 * 1024**2),
])
def test_parse_size(value, size) -> None:
    assert parse_size(value) == size


@pytest.mark.parametrize("value", ["12 parsecs", "MB", "", "-1", -1, True, 1.5, None])
def test_parse_size_refuses(value) -> None:
    with pytest.raises(ValueError, match="max_memory_per_child"):
        parse_size(value, "max_memory_per_child")


@pytest.mark.parametrize(("value", "rate"), [
    ("10/s", (10, 1.0)), ("100/m", (100, 60.0)), ("5/h", (5, 3600.0)), ("1/d", (1, 86400.0)),
    (" 3 / 10s ", (3, 10.0)), ("2/0.5s", (2, 0.5)), ("7/2m", (7, 120.0)),
])
def test_parse_rate(value, rate) -> None:
    assert parse_rate(value) == rate


@pytest.mark.parametrize("value", ["10", "0/s", "10/x", "/s", "10/0s", "ten/s", "-1/s", ""])
def test_parse_rate_refuses(value) -> None:
    with pytest.raises(ValueError, match="rate"):
        parse_rate(value)


# --- the file --------------------------------------------------------------------------------


FULL = """
    app = "myapp.jobs:app"
    database = "data/jobs.db"
    workers = 4
    durability = "fast"
    retention = "2d"
    grace = 10
    lease = "1m"
    max_tasks_per_child = 100
    max_memory_per_child = "512MB"
    crash_limit = 5
    max_payload = "64KiB"

    [queues.default]
    concurrency = 4

    [queues.mail]
    concurrency = 2
    rate_limit = "10/s"
"""


def test_full_file(tmp_path) -> None:
    path = write(tmp_path / "litejobs.toml", FULL)
    c = load_config(str(path), env={})
    assert c.app == "myapp.jobs:app"
    assert c.database == str(tmp_path / "data" / "jobs.db")
    assert (c.workers, c.durability, c.retention, c.grace, c.lease) == (
        4, "fast", 172800.0, 10.0, 60.0)
    assert (c.max_tasks_per_child, c.max_memory_per_child, c.crash_limit, c.max_payload) == (
        100, 512_000_000, 5, 65536)
    assert c.queues == {"default": QueueConfig(4, None), "mail": QueueConfig(2, "10/s")}
    assert c.source == str(path)


def test_defaults(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert load_config(None, env={}) == Config()
    d = Config()
    assert (d.app, d.database, d.workers, d.durability, d.grace, d.lease, d.crash_limit) == (
        None, None, 2, "full", 30.0, 30.0, 3)
    assert d.retention == 7 * 86400 and d.max_payload == MAX_PAYLOAD == 1024 * 1024


def test_database_is_relative_to_the_config_file(tmp_path, monkeypatch) -> None:
    conf_dir = tmp_path / "conf"
    conf_dir.mkdir()
    path = write(conf_dir / "litejobs.toml", 'database = "jobs.db"\n')
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert load_config(str(path), env={}).database == str(conf_dir / "jobs.db")
    # also through a relative path to the file itself
    assert load_config("../conf/litejobs.toml", env={}).database == str(conf_dir / "jobs.db")
    absolute = write(conf_dir / "abs.toml", f'database = "{tmp_path}/abs.db"\n')
    assert load_config(str(absolute), env={}).database == f"{tmp_path}/abs.db"


def test_app_from_config_uses_its_database(tmp_path) -> None:
    conf_dir = tmp_path / "conf"
    conf_dir.mkdir()
    path = write(conf_dir / "litejobs.toml", 'database = "jobs.db"\ndurability = "fast"\n')
    app = litejobs.App.from_config(path)
    assert app.store.path == str(conf_dir / "jobs.db")
    assert app.store.durability == "fast"
    job = app.enqueue("t.x")
    assert (conf_dir / "jobs.db").exists()
    assert app.get_job(job.id) is not None


def test_invalid_toml_names_file_line_and_key(tmp_path) -> None:
    path = write(tmp_path / "litejobs.toml", """
        app = "myapp.jobs:app"
        # a comment
        workers =
        grace = 10
    """)
    with pytest.raises(litejobs.ConfigError) as info:
        load_config(str(path), env={})
    message = str(info.value)
    assert str(path) in message
    assert f"{path}:3" in message
    assert "workers" in message
    assert "TOML" in message


def test_unknown_key_names_file_line_and_key(tmp_path) -> None:
    path = write(tmp_path / "litejobs.toml", """
        app = "myapp.jobs:app"
        workers = 4

        worker_count = 4
    """)
    with pytest.raises(litejobs.ConfigError) as info:
        load_config(str(path), env={})
    message = str(info.value)
    assert f"{path}:4" in message
    assert "worker_count" in message
    assert "unknown key" in message


def test_unknown_queue_key_names_its_line(tmp_path) -> None:
    path = write(tmp_path / "litejobs.toml", """
        [queues.default]
        concurrency = 2

        [queues.mail]
        concurency = 2
    """)
    with pytest.raises(litejobs.ConfigError) as info:
        load_config(str(path), env={})
    message = str(info.value)
    assert f"{path}:5" in message and "concurency" in message and "queues.mail" in message


@pytest.mark.parametrize(("text", "key", "line"), [
    ('workers = 0\n', "workers", 1),
    ('\nworkers = "four"\n', "workers", 2),
    ('durability = "normal"\n', "durability", 1),
    ('app = "myapp.jobs"\n', "app", 1),
    ('lease = 0\n', "lease", 1),
    ('lease = nan\n', "lease", 1),
    ('retention = inf\n', "retention", 1),
    ('grace = "soon"\n', "grace", 1),
    ('max_memory_per_child = "lots"\n', "max_memory_per_child", 1),
    ('crash_limit = true\n', "crash_limit", 1),
    ('[queues.mail]\nrate_limit = "10 per second"\n', "rate_limit", 2),
    ('[queues.mail]\nconcurrency = 0\n', "concurrency", 2),
])
def test_bad_values_name_file_line_and_key(tmp_path, text, key, line) -> None:
    path = tmp_path / "litejobs.toml"
    path.write_text(text)
    with pytest.raises(litejobs.ConfigError) as info:
        load_config(str(path), env={})
    message = str(info.value)
    assert f"{path}:{line}" in message, message
    assert key in message


def test_missing_file(tmp_path) -> None:
    with pytest.raises(litejobs.ConfigError, match="no such file"):
        load_config(str(tmp_path / "nope.toml"), env={})


# --- precedence ------------------------------------------------------------------------------


def test_precedence_flags_over_env_over_file_over_defaults(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    path = write(tmp_path / "litejobs.toml", """
        app = "fromfile:app"
        database = "file.db"
        workers = 3
        grace = 7
    """)
    # file over defaults
    c = load_config(str(path), env={})
    assert (c.app, c.database, c.workers, c.grace, c.lease) == (
        "fromfile:app", str(tmp_path / "file.db"), 3, 7.0, 30.0)

    env = {"LITEJOBS_DATABASE": "/srv/env.db", "LITEJOBS_APP": "fromenv:app",
           "LITEJOBS_WORKERS": "5"}
    c = load_config(str(path), env=env)
    assert (c.app, c.database, c.workers, c.grace) == ("fromenv:app", "/srv/env.db", 5, 7.0)

    c = load_config(str(path), env=env, database="/srv/flag.db", app="fromflag:app", workers=9)
    assert (c.app, c.database, c.workers, c.grace) == ("fromflag:app", "/srv/flag.db", 9, 7.0)

    # a flag of None does not override
    c = load_config(str(path), env=env, database=None, app=None, workers=None)
    assert (c.app, c.database, c.workers) == ("fromenv:app", "/srv/env.db", 5)

    # env over defaults, no file
    (tmp_path / "empty").mkdir()
    monkeypatch.chdir(tmp_path / "empty")
    c = load_config(None, env=env)
    assert (c.app, c.database, c.workers, c.source) == ("fromenv:app", "/srv/env.db", 5, None)


def test_env_names_the_config_file(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    path = write(tmp_path / "other.toml", "workers = 6\n")
    assert load_config(None, env={"LITEJOBS_CONFIG": str(path)}).workers == 6


def test_default_file_in_the_working_directory(tmp_path, monkeypatch) -> None:
    write(tmp_path / "litejobs.toml", "workers = 7\n")
    monkeypatch.chdir(tmp_path)
    c = load_config(None, env={})
    assert c.workers == 7
    assert c.source == str(tmp_path / "litejobs.toml")


def test_relative_env_and_flag_databases_are_made_absolute(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert load_config(None, env={"LITEJOBS_DATABASE": "env.db"}).database == str(
        tmp_path / "env.db")
    assert load_config(None, env={}, database="flag.db").database == str(tmp_path / "flag.db")


@pytest.mark.parametrize(("var", "value"), [
    ("LITEJOBS_WORKERS", "many"), ("LITEJOBS_WORKERS", "0"), ("LITEJOBS_GRACE", "soon"),
    ("LITEJOBS_DURABILITY", "normal"),
])
def test_bad_environment_is_refused_by_name(var, value, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(litejobs.ConfigError) as info:
        load_config(None, env={var: value})
    assert var in str(info.value) and value in str(info.value)


def test_empty_environment_values_are_ignored(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    c = load_config(None, env={"LITEJOBS_WORKERS": "", "LITEJOBS_DATABASE": ""})
    assert (c.workers, c.database) == (2, None)


# --- the template ----------------------------------------------------------------------------


def test_template_is_accepted(tmp_path) -> None:
    path = tmp_path / "litejobs.toml"
    path.write_text(render_template())
    c = load_config(str(path), env={})
    assert c.app == "myapp.jobs:app"
    assert c.database == str(tmp_path / "litejobs.db")
    assert (c.workers, c.durability, c.retention, c.grace, c.lease) == (
        2, "full", 7 * 86400.0, 30.0, 30.0)
    assert c.queues == {"default": QueueConfig(4, None)}
    assert "#" in path.read_text()  # commented

    path.write_text(render_template(app="shop.tasks:app", database="var/q.db"))
    c = load_config(str(path), env={})
    assert (c.app, c.database) == ("shop.tasks:app", str(tmp_path / "var" / "q.db"))
