"""Start a CSV import and watch it: the side of an app that hands work to `litejobs run`.

    python import_csv.py sample orders.csv [--rows 200000]      # write a sample file
    python import_csv.py start orders.csv [--parts 4] [--pause S]  # enqueue the import
    python import_csv.py watch RUN_ID                             # progress until it ends

Run `litejobs run` in this directory beside it (it reads ./litejobs.toml).
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pipeline import app, published_path, start_import

import litejobs

REGIONS = ["north", "south", "east", "west"]


def sample(path: str, rows: int, seed: int) -> None:
    """A sample orders file: one bad row in every 5,000."""
    rng = random.Random(seed)
    with open(path, "w") as f:
        f.write("order_id,region,amount\n")
        for i in range(1, rows + 1):
            amount = "n/a" if i % 5000 == 0 else f"{rng.randint(100, 99999) / 100:.2f}"
            f.write(f"{i},{rng.choice(REGIONS)},{amount}\n")
    print(f"wrote {rows} rows to {path}")


def start(path: str, parts: int, pause: float) -> None:
    run, token = start_import(path, parts=parts, pause=pause)
    print(f"workflow {run.id} ({run.name}) enqueued; approval token {token.id}")
    print(f"  watch:   python import_csv.py watch {run.id}   (or: litejobs jobs --workflow "
          f"{run.id})")
    print(f"  approve: litejobs token complete {token.id} --data '{{\"approved\": true}}'")


def bar(fraction: float, width: int = 10) -> str:
    full = round(fraction * width)
    return "#" * full + "." * (width - full)


def watch(run_id: int, timeout: float) -> int:
    """Print a line whenever a step's state or progress changes, until the run ends."""
    run = litejobs.WorkflowRun(app, run_id)
    deadline = time.monotonic() + timeout
    shown: dict[int, str] = {}
    while time.monotonic() < deadline:
        state = run.state
        for job in run.jobs():
            fraction, message = job.progress or (0.0, "")
            line = f"{job.task:<20} {job.state.value:<10}"
            if job.task == "imports.load_part":
                line += f" [{bar(fraction)}] {message}"
            elif job.task == "litejobs.token" and job.state.value == "waiting":
                line += (f" approve: litejobs token complete {job.id} "
                         "--data '{\"approved\": true}'")
            if shown.get(job.id) != line.split("]")[0]:  # a new state, or bar moved
                shown[job.id] = line.split("]")[0]
                print(f"step {job.id:>4}  {line}", flush=True)
        if state != "running":
            break
        time.sleep(0.2)
    print(f"workflow {run_id}: {run.state}")
    if run.state == "succeeded":
        print(f"result: {run.result(0)}")
    return 0 if run.state in ("succeeded", "running") else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("sample", help="write a sample orders CSV")
    p.add_argument("path")
    p.add_argument("--rows", type=int, default=200_000)
    p.add_argument("--seed", type=int, default=7)
    p = sub.add_parser("start", help="enqueue the import of a CSV file")
    p.add_argument("path")
    p.add_argument("--parts", type=int, default=4)
    p.add_argument("--pause", type=float, default=0.0,
                   help="seconds to sleep every 1000 rows (to watch the progress)")
    p = sub.add_parser("watch", help="follow a run's steps until it ends")
    p.add_argument("run_id", type=int)
    p.add_argument("--timeout", type=float, default=3600)
    opts = parser.parse_args()
    if opts.command == "sample":
        sample(opts.path, opts.rows, opts.seed)
    elif opts.command == "start":
        if not os.path.isfile(opts.path):
            parser.error(f"no file {opts.path}; make one with: python import_csv.py sample "
                         f"{opts.path}")
        start(opts.path, opts.parts, opts.pause)
        print(f"  published to {published_path(opts.path)} once approved")
    else:
        return watch(opts.run_id, opts.timeout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
