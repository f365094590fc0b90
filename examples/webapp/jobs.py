"""The web app's tasks. Imported by server.py (to enqueue) and by `litejobs run` (to run)."""

from __future__ import annotations

import os
import time

import litejobs

HERE = os.path.dirname(os.path.abspath(__file__))

app = litejobs.App.from_config(os.path.join(HERE, "litejobs.toml"))


@app.task(name="webapp.send_welcome", queue="mail", retries=5, timeout=30)
def send_welcome(email: str) -> str:
    """Pretend to talk to a slow mail server."""
    time.sleep(0.5)
    return f"welcome mail sent to {email}"
