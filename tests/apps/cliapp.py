"""A tiny app for the CLI tests; its database is $LITEJOBS_TEST_DB."""

from __future__ import annotations

import os

import litejobs

app = litejobs.App(os.environ["LITEJOBS_TEST_DB"])


@app.task(name="cli.add")
def add(a: int, b: int = 0) -> int:
    return a + b


@app.task(name="cli.mail", queue="mail", priority=5)
def mail(to: str, subject: str = "") -> None:
    pass
