"""Cron example: one entry declared with @app.cron, one in litejobs.toml.

    cd examples/cron
    litejobs cron list                 # entries, next fire times, last fires
    litejobs cron next heartbeat --count 5
    litejobs run                       # fires them; Ctrl-C drains and stops
"""

from __future__ import annotations

import litejobs

app = litejobs.App.from_config("litejobs.toml")


# Every 10 seconds (6 fields: seconds last), in UTC. A fire that finds the previous job still
# pending or running is skipped (overlap = "skip", the default) and recorded as skipped.
@app.cron("* * * * * */10", name="heartbeat")
def heartbeat() -> str:
    fired_for = litejobs.current_job().scheduled_at
    print(f"heartbeat for {fired_for.isoformat()}")
    return fired_for.isoformat()


# The task of the [cron.nightly_report] entry in litejobs.toml.
@app.task(name="reports.nightly")
def nightly_report(kind: str, recipients: list[str]) -> str:
    when = litejobs.current_job().scheduled_at
    return f"{kind} report for {when.date()} sent to {len(recipients)} recipient(s)"
