"""A new user's first mistakes with the Django backend, each on a throwaway project in a
temporary directory (settings as `django-admin startproject` makes them, DEBUG on): a typo
in OPTIONS, the app left out of INSTALLED_APPS, and the log of `manage.py litejobs run`
for a task that raises."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

TASKS = '''\
from django.tasks import task


@task()
def ok() -> str:
    return "ok"


@task(retries=0)
def boom() -> None:
    raise ValueError("boom")
'''


def project(root: Path, options: str = "{'database': BASE_DIR / 'jobs.db'}",
            installed: bool = True) -> Path:
    """A minimal Django 6 project under ``root``: app ``qshop`` with two tasks, its
    URLconf importing them (as views that enqueue do)."""
    (root / "qshop").mkdir(parents=True)
    (root / "qshop" / "__init__.py").write_text("")
    (root / "qshop" / "tasks.py").write_text(TASKS)
    (root / "qurls.py").write_text("import qshop.tasks  # noqa: F401\nurlpatterns = []\n")
    apps = ["django.contrib.contenttypes", "qshop"]
    if installed:
        apps.append("litejobs.contrib.django")
    (root / "qsettings.py").write_text(textwrap.dedent(f"""\
        from pathlib import Path
        BASE_DIR = Path(__file__).resolve().parent
        SECRET_KEY = "first-hour"
        DEBUG = True
        USE_TZ = True
        ROOT_URLCONF = "qurls"
        INSTALLED_APPS = {apps!r}
        DATABASES = {{"default": {{"ENGINE": "django.db.backends.sqlite3",
                                   "NAME": BASE_DIR / "db.sqlite3"}}}}
        TASKS = {{"default": {{"BACKEND": "litejobs.contrib.django.LitejobsBackend",
                              "OPTIONS": {options}}}}}
        """))
    (root / "manage.py").write_text(
        "import sys\nfrom django.core.management import execute_from_command_line\n"
        "execute_from_command_line(sys.argv)\n")
    return root


def env_for(root: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("LITEJOBS_", "DJANGO_", "PYTEST_"))}
    env.update(DJANGO_SETTINGS_MODULE="qsettings", PYTHONPATH=str(root))
    return env


def manage(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "manage.py", *args], cwd=root, env=env_for(root),
                          capture_output=True, text=True, timeout=60, check=False)


def test_a_typo_in_options_is_one_line_naming_it(tmp_path: Path) -> None:
    root = project(tmp_path / "p", options="{'database': BASE_DIR / 'jobs.db', "
                                           "'enqueue_on_comit': True, 'retry': 3}")
    done = manage(root, "shell", "-c", "import qshop.tasks")
    assert done.returncode != 0
    last = done.stderr.strip().splitlines()[-1]
    assert "TASKS['default']['OPTIONS'] has unknown key(s)" in last, done.stderr
    assert "'enqueue_on_comit' (did you mean 'enqueue_on_commit'?)" in last
    assert "'retry' (did you mean 'retries'?)" in last
    run = manage(root, "litejobs", "run")
    assert run.returncode == 1
    assert run.stderr.count("\n") == 1, run.stderr  # one line, no traceback
    assert "'enqueue_on_comit' (did you mean 'enqueue_on_commit'?)" in run.stderr


def test_without_the_app_in_installed_apps_the_backend_says_so(tmp_path: Path) -> None:
    root = project(tmp_path / "p", installed=False)
    done = manage(root, "shell", "-c", "from qshop.tasks import ok; ok.enqueue(); ok.enqueue()")
    assert done.returncode == 0, done.stderr
    line = ("'litejobs.contrib.django' is not in INSTALLED_APPS, so `python manage.py "
            "litejobs run` (the workers for this backend) does not exist: add "
            "'litejobs.contrib.django' to INSTALLED_APPS")
    assert done.stderr.count(line) == 1, done.stderr  # once a process
    # `manage.py check` says it too (the URLconf imports the tasks, as views do)
    check = manage(root, "check")
    assert line in check.stderr, (check.stdout, check.stderr)
    # installed: not a word
    ok = manage(project(tmp_path / "q"), "shell", "-c", "from qshop.tasks import ok; ok.enqueue()")
    assert "INSTALLED_APPS" not in ok.stderr, ok.stderr


def test_the_run_log_has_each_django_record_once(tmp_path: Path) -> None:
    """DEBUG = True gives the "django" logger a console handler on stderr, which a worker
    shares with the supervisor: each django.tasks record (and the failed task's traceback)
    was printed twice, once bare and once under its job."""
    root = project(tmp_path / "p")
    done = manage(root, "shell", "-c", "from qshop.tasks import ok, boom; "
                                       "print(boom.enqueue().id, ok.enqueue().id)")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[-2:] == ["1", "2"], done.stdout
    log_path = tmp_path / "run.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, "manage.py", "litejobs", "run", "--workers",
                                 "1"], cwd=root, env=env_for(root), stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not ("(qshop.tasks.boom, attempt 1) failed" in log_path.read_text()
                   and "(qshop.tasks.ok, attempt 1) succeeded" in log_path.read_text()):
            if time.monotonic() > deadline or proc.poll() is not None:
                pytest.fail(f"the two jobs did not finish:\n{log_path.read_text()}")
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=40) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    text = log_path.read_text()
    for job in ("1", "2"):
        assert text.count(f"Task id={job} path=") == 2, text  # RUNNING, then its end
    assert text.count("Task id=1 path=qshop.tasks.boom state=FAILED") == 1, text
    assert text.count("Traceback (most recent call last)") == 1, text
    assert text.count('raise ValueError("boom")') == 1, text
    # and each one is under its job in the supervisor's log
    assert "job 1 (qshop.tasks.boom, attempt 1) django.tasks: Task id=1" in text, text


def test_an_unknown_backend_alias_names_the_ones_there_are(tmp_path: Path) -> None:
    done = manage(project(tmp_path / "p"), "litejobs", "--backend", "other", "jobs")
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1, done.stderr
    assert "TASKS has no backend 'other' (it has 'default')" in done.stderr


def test_a_rate_limit_without_a_key_is_refused_where_the_task_is_defined() -> None:
    """`@task(rate_limit="5/s")` (README's own example) was accepted, then every enqueue
    raised a ValueError asking for flow_key=, which a Django task cannot take."""
    from django.tasks import task
    from django.tasks.exceptions import InvalidTask

    from tests import ported_tasks as t

    for options in ({"rate_limit": "5/s"}, {"concurrency_limit": 2}):
        with pytest.raises(InvalidTask, match=r"give concurrency_key= too"):
            task(**options)(t.calculate_meaning_of_life.func)
    keyed = task(rate_limit="5/s", concurrency_key="smtp")(t.calculate_meaning_of_life.func)
    assert keyed.rate_limit == "5/s"


def test_a_relative_database_path_is_refused(tmp_path: Path) -> None:
    """A relative path is resolved against each process's working directory: a web server
    started from elsewhere would write its jobs into a file no supervisor serves."""
    root = project(tmp_path / "p", options="{'database': 'jobs.db'}")
    done = manage(root, "shell", "-c", "import qshop.tasks")
    assert done.returncode != 0
    last = done.stderr.strip().splitlines()[-1]
    assert "['OPTIONS']['database'] must be an absolute path (e.g. BASE_DIR / 'jobs.db')" in last
