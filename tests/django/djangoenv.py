"""The virtualenv the Django backend's tests run in: Django 6 needs Python >= 3.12, litejobs
runs on 3.11, so they get their own, ``.venv-django`` at the repository's root.

    python tests/django/djangoenv.py      # find an interpreter, make or reuse the venv

An interpreter is looked for in this order: ``LITEJOBS_DJANGO_PYTHON``, ``python3.13`` then
``python3.12`` on PATH, then pyenv's ``~/.pyenv/versions/3.1[2-9]*``. The venv is rebuilt
only when missing or when pyproject.toml or the interpreter changed (a stamp file records
both), so reruns cost nothing.
"""

from __future__ import annotations

import fcntl
import glob
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent.parent
VENV = REPO / ".venv-django"
STAMP = VENV / "litejobs-stamp"
PACKAGES = ["-e", ".[django]", "pytest", "pytest-django"]
WANTED = (3, 12)

__all__ = ["VENV", "NoInterpreter", "ensure_venv", "find_python"]


class NoInterpreter(RuntimeError):
    """No Python >= 3.12 on this machine: the message says what to install."""


def _version(python: str) -> tuple[int, int] | None:
    try:
        out = subprocess.run([python, "-c", "import sys; print(*sys.version_info[:2])"],
                             capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    parts = out.stdout.split()
    if out.returncode != 0 or len(parts) != 2:
        return None  # e.g. a pyenv shim for a version that is not selected
    return int(parts[0]), int(parts[1])


def find_python() -> str:
    """The path of a Python >= 3.12 interpreter; NoInterpreter when there is none."""
    tried: list[str] = []
    env = os.environ.get("LITEJOBS_DJANGO_PYTHON")
    candidates = [env] if env else []
    candidates += [p for p in (shutil.which("python3.13"), shutil.which("python3.12")) if p]
    candidates += sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.1[2-9]*/bin/python")),
                         reverse=True)
    for python in candidates:
        version = _version(python)
        shown = "not runnable" if version is None else f"{version[0]}.{version[1]}"
        tried.append(f"{python} ({shown})")
        if version is not None and version >= WANTED:
            return os.path.realpath(python) if env is None else python
    raise NoInterpreter(
        "the Django tests need Python >= 3.12 (Django 6) and none was found (tried: "
        f"{', '.join(tried) or 'nothing'}); install one (Debian: apt-get install python3.12 "
        "python3.12-venv, or pyenv install 3.12) or set LITEJOBS_DJANGO_PYTHON to its path")


def _stamp(python: str) -> str:
    digest = hashlib.sha256((REPO / "pyproject.toml").read_bytes()).hexdigest()
    return f"{python}\n{digest}\n{' '.join(PACKAGES)}\n"


def ensure_venv(log: bool = False) -> Path:
    """``.venv-django``'s python, made or refreshed when needed."""
    python = find_python()
    VENV.parent.mkdir(exist_ok=True)
    key = hashlib.sha256(str(REPO).encode()).hexdigest()[:12]
    with open(Path(tempfile.gettempdir()) / f"litejobs-venv-django-{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # CI's pre-build and a test run must not race
        want = _stamp(python)
        if STAMP.exists() and STAMP.read_text() == want and (VENV / "bin/python").exists():
            return VENV / "bin" / "python"
        if log:
            print(f"making {VENV} with {python}", flush=True)
        shutil.rmtree(VENV, ignore_errors=True)
        for cmd in ([python, "-m", "venv", str(VENV)],
                    [str(VENV / "bin/python"), "-m", "pip", "install", "-q", *PACKAGES]):
            done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}):\n"
                                   f"{done.stdout}\n{done.stderr}")
        STAMP.write_text(want)
    return VENV / "bin" / "python"


if __name__ == "__main__":
    try:
        print(ensure_venv(log=True))
    except (NoInterpreter, RuntimeError) as exc:
        sys.exit(f"djangoenv: {exc}")
