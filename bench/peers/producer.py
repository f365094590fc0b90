"""One producer process of the "4 producers" workload of bench/peers.py.

    python producer.py MODULE K COUNT DIR

Imports the adapter MODULE (p_litejobs, p_huey, ...) and gets its enqueue call from
``MODULE.producer()``, which reads the same environment variables as that system's workers, so
it reaches the same store. Enqueues one untimed warm-up job (connections are opened lazily and
the first call would time that), writes DIR/ready-K, waits for DIR/go (the harness creates it
once every producer is ready, so they all start together), then enqueues COUNT jobs one by one
as fast as it can, timing each call. Job ids are K * 1,000,000 + j, unique across producers.

Writes DIR/lat-K: float64s, the wall-clock start and end of the timed loop, then each call's
duration in seconds. Any exception ends the process non-zero with its traceback on stderr,
which the harness reports.
"""

from __future__ import annotations

import array
import importlib
import os
import sys
import time

ID_SPAN = 1_000_000


def main() -> None:
    module, k, count, where = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    enqueue = importlib.import_module(module).producer()
    base = k * ID_SPAN
    enqueue(base + ID_SPAN - 1)  # the warm-up job
    open(os.path.join(where, f"ready-{k}"), "w").close()
    gate = os.path.join(where, "go")
    while not os.path.exists(gate):
        time.sleep(0.001)
    clock = time.perf_counter
    took = array.array("d", bytes(8 * count))
    began = time.time()
    for j in range(count):
        t = clock()
        enqueue(base + j)
        took[j] = clock() - t
    ended = time.time()
    out = os.path.join(where, f"lat-{k}")
    with open(out + ".tmp", "wb") as f:
        array.array("d", [began, ended]).tofile(f)
        took.tofile(f)
    os.replace(out + ".tmp", out)  # the harness never reads half a file


if __name__ == "__main__":
    main()
