"""An app whose tasks mask secrets (``redact``), for tests/test_redact.py and the jobs pages'
tests; its database is $LITEJOBS_TEST_DB."""

from __future__ import annotations

import os
from typing import Any

import litejobs

app = litejobs.App(os.environ["LITEJOBS_TEST_DB"])


@app.task(name="secret.login", redact=["password"])
def login(user: str, password: str, remember: bool = False) -> str:
    return f"{user}:{len(password)}"


@app.task(name="secret.pay", redact=["card", "cvc"])
def pay(amount: int, **details: Any) -> int:
    return amount
