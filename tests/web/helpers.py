"""What the dashboard tests share besides fixtures: the served dashboard's handle, the
Chromium lookup, screenshots, waiting on a page."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.conftest import REPO, wait_for

SCREENSHOTS = REPO / "docs" / "screenshots"
VIEWPORT = {"width": 1280, "height": 800}


def chromium_path() -> str | None:
    path = os.environ.get("LITEJOBS_CHROMIUM")
    if path:
        return path
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


@dataclass
class Dashboard:
    """One `litejobs serve` subprocess."""

    proc: subprocess.Popen[bytes]
    log_path: Path
    url: str  # the root of the dashboard, without a trailing slash
    token: str | None = None
    client: Any = field(default=None, repr=False)

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.client.get(self.url + path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> Any:
        return self.client.post(self.url + path, **kwargs)

    def csrf(self) -> str:
        """The CSRF token a page carries."""
        match = re.search(r'name="csrf" value="([0-9a-f]+)"|"X-CSRF-Token": "([0-9a-f]+)"',
                          self.get("/").text)
        assert match, "no CSRF token on the page"
        return match.group(1) or match.group(2)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.client is not None:
            self.client.close()


def screenshot(page: Any, name: str) -> Path:
    """Save the page as docs/screenshots/NAME.png (the README shows them); not from a
    PostgreSQL run (``page.screenshots`` False)."""
    path = SCREENSHOTS / f"{name}.png"
    if not getattr(page, "screenshots", True):
        return path
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path))
    return path


def until(predicate: Callable[[], Any], timeout: float = 15, what: str = "") -> Any:
    """wait_for with a default deadline for pages."""
    return wait_for(predicate, timeout, what, interval=0.05)

