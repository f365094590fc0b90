"""A stdlib-only web app that enqueues one job per POST.

    python server.py                  # http://127.0.0.1:8000 (PORT=... to change)
    curl -X POST -d email=ada@example.com http://127.0.0.1:8000/signup
    curl http://127.0.0.1:8000/jobs/1

Each request thread enqueues into the same SQLite file; `enqueue` returns once the job is
committed, so the response can promise the work will happen. Run `litejobs run` beside it.
"""

from __future__ import annotations

import json
import os
import re
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

from jobs import app, send_welcome


class Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        if self.path != "/signup":
            return self.reply(404, {"error": "POST /signup with email=..."})
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode("utf-8", errors="replace")
        if "json" in (self.headers.get("Content-Type") or ""):
            email = str(json.loads(body or "{}").get("email", ""))
        else:
            email = parse_qs(body).get("email", [""])[0]
        if "@" not in email:
            return self.reply(400, {"error": "give an email, e.g. -d email=ada@example.com"})
        job = send_welcome.enqueue(email)  # committed when it returns
        self.reply(202, {"job": job.id, "state": job.state.value, "see": f"/jobs/{job.id}"})

    def do_GET(self) -> None:
        match = re.fullmatch(r"/jobs/(\d+)", self.path)
        if not match:
            return self.reply(200, {"usage": "POST /signup email=...; GET /jobs/ID",
                                    "stats": app.stats()["states"]})
        job = app.get_job(int(match.group(1)))
        if job is None:
            return self.reply(404, {"error": f"no job {match.group(1)}"})
        self.reply(200, job.to_dict())

    def reply(self, status: int, data: Any) -> None:
        payload = json.dumps(data, indent=2).encode() + b"\n"
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


def main() -> None:
    port = int(os.environ.get("PORT", "8000"))
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    print(f"listening on http://127.0.0.1:{port}  (database: {app.store.path})", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
