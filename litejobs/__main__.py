"""``python -m litejobs``: the same as the ``litejobs`` command."""

from litejobs.cli import main

main()
