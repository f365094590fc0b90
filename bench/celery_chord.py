"""Celery's chord on Redis beside ``bench/fanout.py``: N children and one callback, against N
plain tasks, one ``celery worker -P prefork -c 2``.

    bench/.venv-peers/bin/python bench/celery_chord.py [--jobs N]

Run it with the interpreter of ``bench/.venv-peers`` (``python bench/peers.py`` makes it: it
has celery and redis). Starts its own redis-server on a free port in a temporary directory
(Debian's ``redis-server``) and stops it at the end. Plain: N ``noop.delay(i)``, timed from the
first call to the last task's end. Chord: ``chord(noop.s(i) for i in range(N))(done.s())``
with Redis as the result backend (a chord needs one), timed from the call to the callback's
start. Each task writes its time to Redis and counts itself there; the timings are read back from
there. Both store their results (the chord needs them).
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import celery
import redis

APP = """
import os, time, celery, redis
url = os.environ["CHORD_REDIS"]
app = celery.Celery("chordapp", broker=url, backend=url)
app.conf.update(worker_hijack_root_logger=False, broker_connection_retry_on_startup=True)
r = redis.Redis.from_url(url)

@app.task(name="noop")
def noop(i=0):
    r.set("last_end", repr(time.time()))
    r.incr("ran")
    return i

@app.task(name="done")
def done(results):
    r.set("callback_start", repr(time.time()))
    return len(results)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait(check: object, what: str, timeout: float = 600.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise SystemExit(f"celery_chord: {what} did not happen in {timeout:.0f} s")
        time.sleep(0.01)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    n = parser.parse_args().jobs
    server = shutil.which("redis-server")
    if server is None:
        raise SystemExit("celery_chord: redis-server not found; apt-get install redis-server")
    with tempfile.TemporaryDirectory(prefix="litejobs-chord-") as tmp:
        port = free_port()
        url = f"redis://127.0.0.1:{port}/0"
        redis_proc = subprocess.Popen([server, "--port", str(port), "--dir", tmp, "--save", "",
                                       "--appendonly", "no"], stdout=subprocess.DEVNULL)
        r = redis.Redis.from_url(url)
        wait(lambda: _ping(r), "redis start", 10)
        with open(os.path.join(tmp, "chordapp.py"), "w") as f:
            f.write(APP)
        env = {**os.environ, "CHORD_REDIS": url, "PYTHONPATH": tmp}
        exe = shutil.which("celery", path=os.path.dirname(sys.executable))
        assert exe is not None
        worker = subprocess.Popen([exe, "-A", "chordapp", "worker", "-P", "prefork", "-c", "2",
                                   "-l", "WARNING", "--without-gossip", "--without-mingle",
                                   "--without-heartbeat"], cwd=tmp, env=env)
        try:
            sys.path.insert(0, tmp)
            os.environ["CHORD_REDIS"] = url
            import chordapp  # type: ignore[import-not-found]

            chordapp.noop.delay(-1).get(timeout=60)  # the worker is up
            r.delete("last_end", "ran")
            t0 = time.time()
            for i in range(n):
                chordapp.noop.delay(i)
            wait(lambda: int(r.get("ran") or 0) >= n, f"{n} plain tasks")
            plain = float(r.get("last_end") or 0) - t0
            r.delete("callback_start")
            t0 = time.time()
            chord_result = celery.chord(chordapp.noop.s(i) for i in range(n))(
                chordapp.done.s())
            assert chord_result.get(timeout=600) == n
            fan = float(r.get("callback_start") or 0) - t0
        finally:
            worker.terminate()
            worker.wait(timeout=60)
            redis_proc.terminate()
            redis_proc.wait(timeout=30)
    print(f"celery {celery.__version__}, redis: {n} plain tasks {plain:.3f} s; "
          f"chord of {n} to the callback's start {fan:.3f} s ({fan / plain:.2f}x)")
    return 0


def _ping(r: redis.Redis) -> bool:
    try:
        return bool(r.ping())
    except redis.ConnectionError:
        return False


if __name__ == "__main__":
    raise SystemExit(main())
