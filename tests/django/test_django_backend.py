"""The Django backend (litejobs.contrib.django) against a real Django 6 project.

Django 6 needs Python >= 3.12 and this suite runs on 3.11 too, so the project's own tests
(examples/django/tests: Django's tests/tasks assertions ported, and the example's use
cases end to end, each with a real `python manage.py litejobs run` supervisor) run in
``.venv-django`` (tests/django/djangoenv.py makes it once), as a subprocess whose result
is asserted here. No 3.12+ interpreter fails this test with what to install; it never
skips.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.django.djangoenv import REPO, NoInterpreter, ensure_venv

PROJECT = REPO / "examples" / "django"


def test_the_django_project_tests_pass(tmp_path: Path) -> None:
    try:
        python = ensure_venv()
    except NoInterpreter as exc:
        pytest.fail(str(exc), pytrace=False)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("LITEJOBS_", "DJANGO_", "PYTEST_"))}
    env["LITEJOBS_EXAMPLE_DATA"] = str(tmp_path)
    done = subprocess.run([str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider"],
                          cwd=PROJECT, env=env, capture_output=True, text=True, timeout=240,
                          check=False)
    assert done.returncode == 0, (
        f"examples/django's tests failed (exit {done.returncode}):\n{done.stdout}\n"
        f"{done.stderr}")
    assert " passed" in done.stdout and "skipped" not in done.stdout, done.stdout


def test_no_interpreter_fails_saying_what_to_install(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.django.djangoenv import find_python

    monkeypatch.setenv("LITEJOBS_DJANGO_PYTHON", str(tmp_path / "no-such-python"))
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(NoInterpreter, match=r"Python >= 3\.12.*apt-get install python3\.12"):
        find_python()


def test_without_django_the_import_says_what_to_install() -> None:
    """Without Django (hidden here, whether installed or not): one line naming the extra."""
    import sys

    code = "import sys; sys.modules['django'] = None; import litejobs.contrib.django"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode != 0
    assert "pip install 'litejobs[django]'" in done.stderr.strip().splitlines()[-1]


def test_import_litejobs_imports_no_django() -> None:
    """With Django installed, ``import litejobs`` (and the CLI, the worker) still imports
    none of it."""
    python = ensure_venv()
    code = ("import sys, litejobs, litejobs.cli, litejobs.worker, litejobs.supervisor\n"
            "loaded = sorted(m for m in sys.modules if m.split('.')[0] in "
            "('django', 'asgiref') or m.startswith('litejobs.contrib'))\n"
            "assert not loaded, loaded")
    done = subprocess.run([str(python), "-c", code], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
