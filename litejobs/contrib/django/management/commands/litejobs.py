"""``python manage.py litejobs <any litejobs command>``: the ``litejobs`` CLI with Django
set up, serving the Django tasks of ``TASKS["default"]`` (``--backend ALIAS`` first for
another): ``python manage.py litejobs run``, ``... jobs --state failed``, ``... run --
gunicorn mysite.wsgi``."""

from __future__ import annotations

import os
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from litejobs.contrib.django.bridge import BACKEND_ENV

APP_SPEC = "litejobs.contrib.django.worker:app"


class Command(BaseCommand):  # type: ignore[misc]  # Django ships no type hints
    help = "Run a litejobs command (run, jobs, show, cron, ...) on this project's tasks."

    def run_from_argv(self, argv: list[str]) -> None:
        # litejobs' own options and subcommands go to its click CLI untouched (Django's
        # argument parser would refuse them).
        sys.exit(self.litejobs(argv[2:], prog=f"{os.path.basename(argv[0])} {argv[1]}"))

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("args", nargs="*", help="A litejobs command and its options.")

    def handle(self, *args: str, **options: Any) -> None:
        code = self.litejobs(list(args), prog="manage.py litejobs")
        if code:
            raise CommandError(f"litejobs {' '.join(args)} exited with status {code}")

    @staticmethod
    def litejobs(args: list[str], prog: str) -> int:
        """Run the litejobs CLI on ``args``; its exit status."""
        from litejobs.cli import main

        if args[:1] == ["--backend"] and len(args) > 1:
            os.environ[BACKEND_ENV], args = args[1], args[2:]
        elif args[:1] and args[0].startswith("--backend="):
            os.environ[BACKEND_ENV], args = args[0].partition("=")[2], args[1:]
        # The app of every litejobs command, and of every worker: the environment reaches
        # the supervisor's workers, fresh interpreters that set Django up from it.
        os.environ.setdefault("LITEJOBS_APP", APP_SPEC)
        try:
            main.main(args=args, prog_name=prog)  # standalone: always ends in SystemExit
        except SystemExit as exc:
            code = exc.code
            return code if isinstance(code, int) else (0 if code is None else 1)
        return 0
