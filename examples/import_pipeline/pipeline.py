"""A CSV import as a workflow: split the file, load the parts in parallel, combine, approve,
publish. Imported by `litejobs run` (to run the tasks) and by import_csv.py (to start one).

    split ──then──▶ load_part × N ──▶ combine ─┐
                                               ├──▶ publish
    approval token (app.complete_token) ───────┘

``split`` cuts the file into byte ranges at line boundaries and returns
``litejobs.then(parts, combine)``: the parts and the step that combines them are written with
its success, and no worker waits for them. Every ``load_part`` reports its progress; ``combine``
gets their results in order (``current_job().results()``); ``publish`` waits on the combined
figures and on a person's approval (a token) and writes the figures where readers find them.
"""

from __future__ import annotations

import csv
import itertools
import json
import os
import time
from decimal import Decimal, InvalidOperation
from typing import Any

import litejobs

HERE = os.path.dirname(os.path.abspath(__file__))

# The database is named in litejobs.toml; LITEJOBS_DATABASE overrides it (as for the CLI).
app = litejobs.App.from_config(os.path.join(HERE, "litejobs.toml"))

COLUMNS = ["order_id", "region", "amount"]
REPORT_EVERY = 1000  # rows between progress reports (a report costs the task ~1 µs)


def published_path(path: str) -> str:
    """Where ``publish`` writes the figures of the file at ``path``."""
    stem = os.path.splitext(os.path.basename(path))[0]
    return os.path.join(os.path.dirname(os.path.abspath(path)), "published", stem + ".json")


def start_import(path: str, parts: int = 4, approve_within: float = 86400,
                 pause: float = 0.0) -> tuple[litejobs.WorkflowRun, litejobs.Token]:
    """Enqueue the import of ``path`` (one transaction); returns the run and the approval
    token to complete (``litejobs token complete ID --data '{"approved": true}'``).
    ``pause``: seconds to sleep every 1000 rows, to watch the progress in a demo."""
    path = os.path.abspath(path)
    token = app.create_token(timeout=approve_within)  # not approved in time: publish cancelled
    flow = app.workflow(name=f"import {os.path.basename(path)}")
    loaded = flow.add(split.prepare(path, parts, pause))
    flow.add(publish.prepare(path), after=[loaded, token])  # results(): [combined, approval]
    return flow.enqueue(), token


@app.task(name="imports.split", retries=0)
def split(path: str, parts: int, pause: float = 0.0) -> litejobs.Then:
    """Check the header and cut the rows into ``parts`` byte ranges; load them in parallel,
    then combine. A bad header fails here (no retry: the file will not change by itself)."""
    with open(path, "rb") as f:
        header = next(csv.reader([f.readline().decode()]), [])
        if header != COLUMNS:
            raise ValueError(f"{path}: the header is {header}, expected {COLUMNS}")
        first = f.tell()
        size = os.fstat(f.fileno()).st_size
        cuts = [first]
        for k in range(1, parts):
            # Start each part at the first line that begins at or after its share of bytes.
            f.seek(max(first + (size - first) * k // parts - 1, cuts[-1]))
            f.readline()
            cuts.append(max(f.tell(), cuts[-1]))
        cuts.append(size)
    ranges = [(a, b) for a, b in itertools.pairwise(cuts) if a < b]
    litejobs.current_job().set_metadata(parts=len(ranges), bytes=size)
    return litejobs.then([load_part.prepare(path, a, b, pause) for a, b in ranges],
                         combine.prepare(path))


@app.task(name="imports.load_part", retries=3)
def load_part(path: str, start: int, end: int, pause: float = 0.0) -> dict[str, Any]:
    """Read the rows in bytes ``start``..``end``: totals per region, bad rows counted.
    Running it twice gives the same answer, so a retry or a rescue is harmless."""
    ctx = litejobs.current_job()
    rows, bad, samples = 0, 0, list[str]()
    cents: dict[str, int] = {}
    with open(path, "rb") as f:
        f.seek(start)
        while (offset := f.tell()) < end:
            line = f.readline()
            try:
                order_id, region, amount = next(csv.reader([line.decode()]))
                value = Decimal(amount)
                if not order_id or not region or not value.is_finite():
                    raise ValueError("empty field")
                cents[region] = cents.get(region, 0) + int(value * 100)
                rows += 1
            except (ValueError, InvalidOperation, StopIteration):
                bad += 1
                if len(samples) < 5:
                    samples.append(f"byte {offset}: {line[:60].decode(errors='replace')!r}")
            if (rows + bad) % REPORT_EVERY == 0:
                ctx.set_progress((f.tell() - start) / (end - start), f"{rows + bad} rows")
                if pause:
                    time.sleep(pause)
    ctx.set_progress(1.0, f"{rows + bad} rows")
    return {"rows": rows, "bad": bad, "samples": samples, "cents": cents}


@app.task(name="imports.combine")
def combine(path: str) -> dict[str, Any]:
    """Add up the parts' results (``current_job().results()``, in the order of the parts)."""
    rows, bad, samples = 0, 0, list[str]()
    cents: dict[str, int] = {}
    for part in litejobs.current_job().results():
        rows += part["rows"]
        bad += part["bad"]
        samples += part["samples"]
        for region, value in part["cents"].items():
            cents[region] = cents.get(region, 0) + value
    litejobs.current_job().set_metadata(rows=rows, bad=bad)
    return {"file": os.path.basename(path), "rows": rows, "bad": bad, "samples": samples[:5],
            "totals": {r: f"{Decimal(c) / 100:.2f}" for r, c in sorted(cents.items())}}


@app.task(name="imports.publish")
def publish(path: str) -> dict[str, Any]:
    """Write the combined figures to published/<name>.json if the token approved them."""
    figures, approval = litejobs.current_job().results()
    if not (isinstance(approval, dict) and approval.get("approved") is True):
        return {"published": False, "approval": approval}
    out = published_path(path)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out + ".tmp", "w") as f:  # readers never see half a file
        json.dump({**figures, "approval": approval}, f, indent=2)
    os.replace(out + ".tmp", out)
    return {"published": True, "path": out, "rows": figures["rows"]}
