"""The ``litejobs`` command.

Every command takes ``--config`` and ``--database`` after its name; those that print data take
``--json``. Errors are one line naming the problem and what to do, with a non-zero exit.
"""

from __future__ import annotations

import click

from litejobs.cli.admin import check, doctor, init, queues, stats
from litejobs.cli.cron import cron
from litejobs.cli.jobs import cancel, enqueue, explain, jobs, purge, retry, show
from litejobs.cli.migrate_store import migrate_store
from litejobs.cli.operate import backup, health
from litejobs.cli.run import run
from litejobs.cli.serve import serve
from litejobs.cli.workflows import token, workflows

__all__ = ["main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="litejobs")
def main() -> None:
    """litejobs: background jobs and cron in one SQLite file."""


for _command in (run, init, check, enqueue, jobs, show, retry, cancel, purge, queues, explain,
                 stats, doctor, cron, workflows, token, serve, health, backup, migrate_store):
    main.add_command(_command)
